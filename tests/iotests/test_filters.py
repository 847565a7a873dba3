"""The output filters, against lines the real tools print."""

from __future__ import annotations

from iotests import filters


def test_qemu_io_timing_line_is_normalised():
    line = "33 MiB, 1 ops; 00.02 sec (1.388 GiB/sec and 43.0412 ops/sec)\n"
    assert filters.filter_qemu_io(line) == "33 MiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)\n"


def test_qemu_io_inf_rate_is_normalised():
    line = "512 bytes, 1 ops; 0.0000 sec (inf bytes/sec and inf ops/sec)\n"
    assert filters.filter_qemu_io(line) == "512 bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)\n"


def test_prog_names_map_to_qemu():
    text = "blockfmt-io: can't open\nblockfmt-img check -r all 'x'\n"
    assert filters.filter_prog_names(text) == "qemu-io: can't open\nqemu-img check -r all 'x'\n"


def test_img_create_keeps_generic_options_only():
    line = "Formatting '/tmp/d/t.vhdx', fmt=vhdx size=67108864 log_size=1048576 block_size=0\n"
    expected = "Formatting 'TEST_DIR/t.IMGFMT', fmt=IMGFMT size=67108864\n"
    assert filters.filter_img_create(line, "/tmp/d", "vhdx") == expected


def test_img_create_keeps_preallocation():
    line = "Formatting '/tmp/d/t.vdi', fmt=vdi size=1024 preallocation=metadata static=on\n"
    expected = "Formatting 'TEST_DIR/t.IMGFMT', fmt=IMGFMT size=1024 preallocation=metadata\n"
    assert filters.filter_img_create(line, "/tmp/d", "vdi") == expected


def test_img_info_drops_disk_size_and_format_specific_section():
    text = (
        "image: /tmp/d/t.vhdx\nfile format: vhdx\nvirtual size: 64 MiB (67108864 bytes)\n"
        "disk size: 1.21 MiB\ncluster_size: 8388608\nFormat specific information:\n    x: 1\n\nafter\n"
    )
    expected = (
        "image: TEST_DIR/t.IMGFMT\nfile format: IMGFMT\nvirtual size: 64 MiB (67108864 bytes)\n"
        "cluster_size: 8388608\n\nafter\n"
    )
    assert filters.filter_img_info(text, "/tmp/d", "vhdx") == expected


def test_img_info_py_names_the_image_test_img():
    text = "image: /tmp/d/1-t.vdi\nfile format: vdi\ndisk size: 4 KiB\n"
    assert filters.filter_img_info_py(text, "/tmp/d/1-t.vdi", "/tmp/d", "vdi") == (
        "image: TEST_IMG\nfile format: IMGFMT\n"
    )


def test_qmp_testfiles_hide_dir_and_pid():
    text = '{"filename": "/tmp/d/4242-t.vdi"}'
    assert filters.filter_qmp_testfiles(text, "/tmp/d", 4242) == '{"filename": "TEST_DIR/PID-t.vdi"}'
