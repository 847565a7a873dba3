"""Flattening: writes through blockfmt-io into a child, converted to raw, equal the same writes made
by the real qemu-io on a raw copy of the parent (QEMU reads the plain parents, not the children)."""

from __future__ import annotations

import pytest

import blockfmt
from blockfmt.testing.qemu import run_tool
from tests.cli.conftest import run_in_process

MiB = 1 << 20
SIZE = 12 * MiB
PARENT_WRITES = ("write -P 0x5a 0 3M", "write -P 0x6b 5M 1M", "write -P 0x7c 11M 1M")
#: sector runs that start and end mid-byte of a VHDX bitmap, unaligned bytes, block crossings
CHILD_WRITES = (
    "write -P 0x01 1536 5120",
    "write -P 0x02 3000 777",
    "write -P 0x03 1047552 4096",
    "write -P 0x04 4194816 2048",
    "write -z 5M 512k",
    "write -P 0x05 5767168 1048576",
    "write -P 0x06 12582400 512",
    "write -P 0x07 2097153 1",
)


def _io_args(commands: tuple[str, ...]) -> list[str]:
    return [arg for cmd in commands for arg in ("-c", cmd)]


@pytest.mark.qemu
@pytest.mark.parametrize(
    ("fmt", "child", "options"),
    [
        ("vhdx", "child.avhdx", {"block_size": MiB}),
        ("vhdx", "child4k.avhdx", {"block_size": 2 * MiB, "logical_sector_size": 4096}),
        ("vdi", "child.vdi", {}),
    ],
)
def test_child_writes_flatten_like_qemu_io_on_raw(
    capsys, monkeypatch, tmp_path, qemu_img, qemu_io, fmt, child, options
):
    parent = f"parent.{fmt}"
    blockfmt.create(tmp_path / parent, fmt, SIZE, **options)

    def tool(name: str, *args: str) -> None:
        outcome = run_in_process(capsys, monkeypatch, tmp_path, name, list(args))
        assert outcome.code == 0, outcome.stderr

    tool("io", *_io_args(PARENT_WRITES), parent)
    blockfmt.create(tmp_path / child, fmt, None, backing_file=parent, backing_fmt=fmt)
    tool("io", *_io_args(CHILD_WRITES), child)
    tool("img", "convert", "-O", "raw", child, "ours.raw")
    if options.get("logical_sector_size") == 4096:  # QEMU opens only 512-byte VHDX: blockfmt copies it
        tool("img", "convert", "-O", "raw", parent, "theirs.raw")
    else:
        convert = run_tool(
            [qemu_img, "convert", "-f", fmt, "-O", "raw", parent, "theirs.raw"], cwd=str(tmp_path)
        )
        assert convert.returncode == 0, convert.output
    writes = run_tool([qemu_io, "-f", "raw", *_io_args(CHILD_WRITES), "theirs.raw"], cwd=str(tmp_path))
    assert writes.returncode == 0, writes.output
    assert (tmp_path / "ours.raw").read_bytes() == (tmp_path / "theirs.raw").read_bytes()
