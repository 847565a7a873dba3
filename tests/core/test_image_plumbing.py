"""Image-level plumbing that every format shares: extent merging and the file layer."""

from __future__ import annotations

import array
from pathlib import Path

import pytest

import blockfmt
from blockfmt.driver import Extent
from blockfmt.errors import BlockIOError, OutOfRangeError
from blockfmt.fileio import OsImageFile
from blockfmt.image import merge_extents


def test_merge_joins_neighbours_with_continuing_host_offsets() -> None:
    """Two data runs merge only when their host offsets continue each other."""
    extents = [
        Extent(0, 10, True, False, 100),
        Extent(10, 10, True, False, 110),
        Extent(20, 10, True, False, 500),
        Extent(30, 5, False, True),
        Extent(35, 5, False, True),
        Extent(40, 0, True, False, 0),
    ]
    assert merge_extents(extents) == [
        Extent(0, 20, True, False, 100),
        Extent(20, 10, True, False, 500),
        Extent(30, 10, False, True),
    ]


def test_merge_keeps_different_states_apart() -> None:
    """A zero run and a data run never merge."""
    extents = [Extent(0, 4, False, True), Extent(4, 4, True, False, 4)]
    assert merge_extents(extents) == extents


def test_file_layer_reads_zeros_past_eof_and_exact_read_refuses(tmp_path: Path) -> None:
    """pread pads with zeros past end of file; pread_exact raises OutOfRangeError there."""
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    file = OsImageFile(str(path), read_only=True)
    try:
        assert file.pread(5, 1) == b"bc\0\0\0"
        with pytest.raises(OutOfRangeError):
            file.pread_exact(5, 1, "test structure")
    finally:
        file.close()


def test_file_layer_wraps_os_errors(tmp_path: Path) -> None:
    """A missing file is a BlockIOError with errno, not a bare OSError."""
    with pytest.raises(BlockIOError) as info:
        OsImageFile(str(tmp_path / "missing"), read_only=True)
    assert info.value.errno == 2
    assert "No such file or directory" in str(info.value)


def test_punch_hole_zeroes_the_range(tmp_path: Path) -> None:
    """punch_hole makes the range read as zeros and keeps the file size."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 65536)
    file = OsImageFile(str(path), read_only=False)
    try:
        file.punch_hole(4096, 8192)
        assert file.size() == 65536
        assert file.pread(8192, 4096) == bytes(8192)
        assert file.pread(10, 0) == b"x" * 10
    finally:
        file.close()


@pytest.mark.parametrize("fmt", ["raw", "vhdx", "vdi"])
def test_buffers_of_wider_items_are_read_and_written_as_their_bytes(tmp_path: Path, fmt: str) -> None:
    """readinto_at/write_at take any contiguous buffer: a view of 16-bit items or of signed bytes
    moves its bytes (len() of such a view counts items, not bytes), and the request is checked
    against the disk size in bytes."""
    path = tmp_path / f"disk.{fmt}"
    blockfmt.create(path, fmt, 4 << 20)
    pattern = bytes(range(256)) * 16
    with blockfmt.open(path, fmt, read_only=False) as img:
        assert img.write_at(8192, array.array("H", pattern)) == len(pattern)
        assert img.write_at(4096, memoryview(bytearray(b"\x7f" * 512)).cast("b")) == 512
        wide = array.array("H", bytes(len(pattern)))
        assert img.readinto_at(8192, wide) == len(pattern)
        assert wide.tobytes() == pattern
        signed = memoryview(bytearray(1024)).cast("b")
        assert img.readinto_at(3584, signed) == 1024
        assert signed.tobytes() == bytes(512) + b"\x7f" * 512
        with pytest.raises(OutOfRangeError):
            img.readinto_at((4 << 20) - 4096, array.array("H", bytes(8192)))
