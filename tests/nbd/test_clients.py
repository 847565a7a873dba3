"""Real NBD clients against ``blockfmt-nbd``: qemu-img, qemu-io, nbdinfo and nbdcopy."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import blockfmt
from blockfmt.testing.qemu import run_tool

from .conftest import run_ok, run_once_connected

pytestmark = pytest.mark.qemu

MiB = 1 << 20


def make_vhdx(path: Path, size: int = 64 * MiB, **options: object) -> Path:
    """A VHDX with data in two separate places and holes between them."""
    blockfmt.create(path, "vhdx", size, block_size=MiB, **options)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(MiB, b"\xab" * (3 * MiB))
        img.write_at(40 * MiB + 4096, b"\x5a" * 8192)
    return path


def blockfmt_raw(source: Path, target: Path) -> bytes:
    run_ok(["blockfmt-img", "convert", "-O", "raw", str(source), str(target)])
    return target.read_bytes()


def test_qemu_img_info_reports_the_virtual_size(serve, qemu_img, tmp_path):
    server = serve(make_vhdx(tmp_path / "d.vhdx"), "-t", "-f", "vhdx")
    info = json.loads(run_ok([qemu_img, "info", "--output=json", server.uri]))
    assert info["virtual-size"] == 64 * MiB and info["format"] == "raw"


def test_qemu_img_map_sees_the_real_allocation(serve, qemu_img, tmp_path):
    server = serve(make_vhdx(tmp_path / "d.vhdx"), "-t", "-r")
    extents = json.loads(run_ok([qemu_img, "map", "--output=json", server.uri]))
    data = [(e["start"], e["length"]) for e in extents if e["data"]]
    assert data == [(MiB, 3 * MiB), (40 * MiB, MiB)]
    assert all(e["zero"] for e in extents if not e["data"])


def test_nbdinfo_map_shows_holes(serve, nbdinfo, tmp_path):
    server = serve(make_vhdx(tmp_path / "d.vhdx"), "-t", "-r")
    lines = run_ok([nbdinfo, "--map", server.uri]).splitlines()
    rows = [line.split(None, 3) for line in lines]
    assert [(int(start), int(length), kind) for start, length, _, kind in rows] == [
        (0, MiB, "hole,zero"),
        (MiB, 3 * MiB, "data"),
        (4 * MiB, 36 * MiB, "hole,zero"),
        (40 * MiB, MiB, "data"),
        (41 * MiB, 23 * MiB, "hole,zero"),
    ]


def test_nbdcopy_copies_bytes_and_keeps_the_copy_sparse(serve, nbdcopy, tmp_path):
    image = make_vhdx(tmp_path / "d.vhdx")
    server = serve(image, "-t", "-r", "-e", "4")
    target = tmp_path / "copy.raw"
    run_ok([nbdcopy, server.uri, str(target)])
    assert target.read_bytes() == blockfmt_raw(image, tmp_path / "expected.raw")
    assert os.stat(target).st_blocks * 512 <= 8 * MiB  # 4 MiB of data, the holes stay holes


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("vhdx", {"logical_sector_size": 512}),
        ("vhdx", {"logical_sector_size": 4096}),
        ("vdi", {}),
    ],
    ids=["vhdx-512", "vhdx-4096", "vdi"],
)
def test_qemu_img_convert_of_the_export_equals_blockfmt_convert(serve, qemu_img, tmp_path, fmt, options):
    image = tmp_path / f"d.{fmt}"
    blockfmt.create(image, fmt, 48 * MiB, **options)
    with blockfmt.open(image, read_only=False) as img:
        for index, offset in enumerate((0, 3 * MiB + 512, 17 * MiB - 4096, 48 * MiB - 1024)):
            img.write_at(offset, bytes([index + 1]) * 1024)
    server = serve(image, "-r", "-f", fmt)
    served = tmp_path / "served.raw"
    run_ok([qemu_img, "convert", "-O", "raw", server.uri, str(served)])
    assert served.read_bytes() == blockfmt_raw(image, tmp_path / "direct.raw")


@pytest.mark.parametrize(
    ("fmt", "suffix", "options"),
    [
        ("vhdx", "avhdx", {"block_size": MiB}),
        ("vhdx", "avhdx", {"logical_sector_size": 4096}),
        ("vdi", "vdi", {}),
    ],
    ids=["vhdx-512", "vhdx-4096", "vdi"],
)
def test_a_differencing_chain_exports_as_its_flattened_bytes(serve, qemu_img, tmp_path, fmt, suffix, options):
    """A base, a middle and a top child (formats QEMU cannot open as chains) served through
    blockfmt-nbd: the export reads as ``blockfmt-img convert -O raw`` flattens the chain."""
    names = [tmp_path / f"base.{fmt}", tmp_path / f"mid.{suffix}", tmp_path / f"top.{suffix}"]
    writes = [(0, 0x11, 3 * MiB), (MiB + 1536, 0x22, 5000), (2 * MiB - 512, 0x33, 4096)]
    for depth, (name, (offset, byte, length)) in enumerate(zip(names, writes, strict=True)):
        if depth == 0:
            blockfmt.create(name, fmt, 24 * MiB, **options)
        else:  # each layer is written before its child is made, as a parent must stay unchanged
            blockfmt.create(name, fmt, None, backing_file=str(names[depth - 1]), backing_fmt=fmt)
        with blockfmt.open(name, read_only=False) as img:
            img.write_at(offset, bytes([byte]) * length)
    server = serve(names[-1], "-r", "-f", fmt)
    served = tmp_path / "served.raw"
    run_ok([qemu_img, "convert", "-O", "raw", server.uri, str(served)])
    expected = blockfmt_raw(names[-1], tmp_path / "direct.raw")
    assert served.read_bytes() == expected
    assert expected[MiB + 1536 : MiB + 1536 + 5000] == b"\x22" * 5000  # the middle layer shows through


def test_qemu_io_writes_and_reads_patterns_that_land_in_the_image(serve, qemu_io, qemu_img, tmp_path):
    image = make_vhdx(tmp_path / "d.vhdx")
    server = serve(image, "-t")
    out = run_ok(
        [
            qemu_io, "-f", "raw",
            "-c", "write -P 0x11 0 64k",
            "-c", "write -P 0x22 -f 10M 4k",  # FUA
            "-c", "write -z 1M 1M",
            "-c", "flush",
            "-c", "read -P 0x11 0 64k",
            "-c", "read -P 0x22 10M 4k",
            "-c", "read -P 0 1M 1M",
            "-c", "read -P 0xab 2M 2M",
            server.uri,
        ]
    )  # fmt: skip
    assert "Pattern verification failed" not in out
    assert server.stop() == 0
    with blockfmt.open(image) as img:
        assert img.read_at(0, 65536) == b"\x11" * 65536
        assert img.read_at(10 * MiB, 4096) == b"\x22" * 4096
        assert img.read_at(MiB, MiB) == bytes(MiB)
        assert img.read_at(2 * MiB, 2 * MiB) == b"\xab" * (2 * MiB)
    check = run_tool([qemu_img, "check", "-f", "vhdx", str(image)])
    assert check.returncode == 0 and "No errors were found on the image." in check.output


@pytest.mark.parametrize(("discard", "freed"), [("unmap", True), ("ignore", False)])
def test_discard_mode_decides_whether_trim_and_zero_free_blocks(serve, qemu_io, tmp_path, discard, freed):
    image = make_vhdx(tmp_path / "d.vhdx")
    server = serve(image, "-t", f"--discard={discard}")
    run_ok([qemu_io, "-f", "raw", "-c", "discard 1M 1M", "-c", "write -z -u 2M 1M", server.uri])
    server.stop()
    with blockfmt.open(image) as img:
        assert img.read_at(2 * MiB, MiB) == bytes(MiB)
        data = [(e.offset, e.length) for e in img.map() if e.data]
    assert (data[0] == (3 * MiB, MiB)) is freed


@pytest.mark.parametrize(
    ("name", "size", "block"),
    [("odd.raw", 1_000_001, None), ("odd.vhdx", 5 * MiB + 512, MiB), ("odd.vdi", 3 * MiB + 512, MiB)],
)
def test_sizes_that_are_not_a_multiple_of_the_block_size(serve, nbdcopy, tmp_path, name, size, block):
    image = tmp_path / name
    fmt = name.rsplit(".", 1)[1]
    options = {"block_size": block} if block and fmt == "vhdx" else {}
    blockfmt.create(image, fmt, size, **options)
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(img.size - 700, b"\xee" * 700)
        expected = img.read_at(0, img.size)
    server = serve(image, "-r", "-f", fmt)
    target = tmp_path / "copy.raw"
    run_ok([nbdcopy, server.uri, str(target)])
    assert target.read_bytes() == expected


def test_read_only_export_refuses_writes_and_leaves_the_file_alone(serve, qemu_io, tmp_path):
    image = make_vhdx(tmp_path / "d.vhdx")
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    server = serve(image, "-r", "-t")
    result = run_tool([qemu_io, "-f", "raw", "-c", "write -P 1 0 4k", server.uri])
    assert "Could not open image: Permission denied" in result.output, result.output
    run_once_connected([qemu_io, "-r", "-f", "raw", "-c", "read -P 0xab 1M 1M", server.uri])
    server.stop()
    assert hashlib.sha256(image.read_bytes()).hexdigest() == before


def test_a_corrupt_image_gives_the_client_eio_and_the_server_keeps_serving(serve, qemu_io, tmp_path):
    image = tmp_path / "d.vdi"
    blockfmt.create(image, "vdi", 8 * MiB)
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(0, b"\x01" * MiB)
        img.write_at(4 * MiB, b"\x02" * MiB)
    os.truncate(image, os.path.getsize(image) - MiB // 2)  # the second block now ends past EOF
    server = serve(image, "-r", "-t")
    result = run_tool([qemu_io, "-r", "-f", "raw", "-c", "read 4M 1M", server.uri])
    assert "read failed: Input/output error" in result.output, result.output
    run_once_connected([qemu_io, "-r", "-f", "raw", "-c", "read -P 1 0 1M", server.uri])
    assert server.process.poll() is None


def test_export_name_and_description(serve, nbdinfo, tmp_path):
    server = serve(
        make_vhdx(tmp_path / "d.vhdx"), "-r", "-t", "-e", "0", "-x", "disk0", "-D", "a blockfmt disk"
    )
    info = json.loads(run_ok([nbdinfo, "--json", server.uri_for("disk0")]))
    assert info["exports"][0]["export-name"] == "disk0"
    assert info["exports"][0]["description"] == "a blockfmt disk"
    assert run_tool([nbdinfo, server.uri_for("other")]).returncode != 0


def test_without_persistent_the_server_exits_after_its_client(serve, qemu_img, tmp_path):
    server = serve(make_vhdx(tmp_path / "d.vhdx"), "-r")
    run_ok([qemu_img, "info", server.uri])
    assert server.process.wait(timeout=30) == 0
