"""blockfmt.blockdev: QMP blockdev-create dictionaries, through the raw format (no plugin needed)."""

from __future__ import annotations

import pytest

from blockfmt.blockdev import blockdev_create, main
from blockfmt.errors import InvalidOptionError, UnsupportedFormatError
from iotests.backends import BlockfmtStorage

MiB = 1 << 20


def test_file_driver_makes_an_empty_file(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    blockdev_create({"driver": "file", "filename": str(target), "size": 0})
    assert target.read_bytes() == b""


def test_inline_file_reference(tmp_path):
    target = tmp_path / "r.img"
    blockdev_create({"driver": "raw", "file": {"driver": "file", "filename": str(target)}, "size": MiB})
    assert target.stat().st_size == MiB


def test_node_reference(tmp_path):
    target = tmp_path / "r.img"
    blockdev_create({"driver": "raw", "file": "node0", "size": 4096}, nodes={"node0": str(target)})
    assert target.stat().st_size == 4096


def test_unknown_node_has_qemus_message():
    with pytest.raises(InvalidOptionError, match=r"^Cannot find device='x' nor node-name='x'$"):
        blockdev_create({"driver": "raw", "file": "x", "size": 1})


def test_unknown_driver():
    with pytest.raises(UnsupportedFormatError, match="Unknown file format 'nope'"):
        blockdev_create({"driver": "nope", "file": "x", "size": 1}, nodes={"x": "/nonexistent"})


def test_unknown_option_is_refused(tmp_path):
    with pytest.raises(InvalidOptionError, match="Invalid parameter 'bogus'"):
        blockdev_create(
            {
                "driver": "raw",
                "file": {"driver": "file", "filename": str(tmp_path / "r")},
                "size": 1,
                "bogus": 1,
            }
        )


def test_missing_size_is_refused(tmp_path):
    with pytest.raises(InvalidOptionError, match="Parameter 'size' is missing"):
        blockdev_create({"driver": "raw", "file": {"driver": "file", "filename": str(tmp_path / "r")}})


def test_command_line(tmp_path, capsys):
    target = tmp_path / "r.img"
    assert main(["--node", f"n={target}", '{"driver": "raw", "file": "n", "size": 512}']) == 0
    assert target.stat().st_size == 512
    assert main(['{"driver": "raw", "file": "n", "size": 512}']) == 1
    assert "Cannot find device='n' nor node-name='n'" in capsys.readouterr().err


def test_in_process_storage_answers_like_qmp(tmp_path):
    storage = BlockfmtStorage([f"driver=file,filename={tmp_path / 'a'},node-name=node0"])
    response, error = storage.run_job(
        "job0",
        {
            "execute": "blockdev-create",
            "arguments": {"job-id": "job0", "options": {"driver": "raw", "file": "node0", "size": 512}},
        },
    )
    assert (response, error) == ({"return": {}}, None)
    assert storage.qmp("job-dismiss", {"id": "job0"}) == {"return": {}}
    assert "error" in storage.qmp("job-dismiss", {"id": "job0"})
    _, error = storage.run_job(
        "job0",
        {
            "execute": "blockdev-create",
            "arguments": {"job-id": "job0", "options": {"driver": "raw", "file": "other", "size": 512}},
        },
    )
    assert error == "Cannot find device='other' nor node-name='other'"
