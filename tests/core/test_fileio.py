"""The file layer's OS helpers: block cloning, early writeback, data and hole runs, large writes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import blockfmt
from blockfmt.fileio import ImageFile, OsImageFile, clone_file_range

#: tmpfs cannot share blocks between files: the refusal path, on every Linux machine
TMPFS = Path("/dev/shm")


def test_clone_is_refused_without_reflinks_and_changes_nothing() -> None:
    """A file system without reflinks answers False and leaves the target as it was."""
    source, target = TMPFS / f"blockfmt-clone-src-{os.getpid()}", TMPFS / f"blockfmt-clone-dst-{os.getpid()}"
    try:
        source.write_bytes(b"\xa5" * 65536)
        target.write_bytes(b"\x00" * 65536)
        with source.open("rb") as src, target.open("r+b") as dst:
            assert clone_file_range(src.fileno(), 0, dst.fileno(), 0, 65536) is False
        assert target.read_bytes() == b"\x00" * 65536
    finally:
        source.unlink(missing_ok=True)
        target.unlink(missing_ok=True)


def test_clone_raises_what_is_not_a_refusal(tmp_path: Path) -> None:
    """A bad source descriptor is an error of the caller, not a file system that cannot clone."""
    target = tmp_path / "dst"
    target.write_bytes(bytes(4096))
    with target.open("r+b") as dst, pytest.raises(OSError) as raised:
        clone_file_range(-1, 0, dst.fileno(), 0, 4096)
    assert raised.value.errno == errno.EBADF


def test_start_writeback_keeps_data_and_is_a_no_op_where_nothing_can_be_written(tmp_path: Path) -> None:
    """Writeback is a hint: the bytes read back, read-only and closed images accept it silently."""
    path = tmp_path / "disk.raw"
    blockfmt.create(path, "raw", 1 << 20)
    with blockfmt.open(path, "raw", read_only=False) as img:
        img.write_at(4096, b"\x5a" * 8192)
        img.start_writeback()
        assert img.read_at(4096, 8192) == b"\x5a" * 8192
    img.start_writeback()  # closed
    with blockfmt.open(path, "raw") as ro:
        ro.start_writeback()
        assert ro.read_at(0, 12288) == bytes(4096) + b"\x5a" * 8192


def test_data_runs_split_a_sparse_file_into_data_and_holes(tmp_path: Path) -> None:
    """SEEK_DATA/SEEK_HOLE runs cover the range exactly, in order, clipped to it; a plain
    ImageFile (no way to tell) calls it all data."""
    path = tmp_path / "sparse"
    block = 1 << 20
    with path.open("wb") as f:
        f.truncate(4 * block)
        os.pwrite(f.fileno(), b"\x01" * block, block)
    file = OsImageFile(str(path), read_only=True)
    try:
        assert list(file.data_runs(0, 4 * block)) == [
            (0, block, False),
            (block, block, True),
            (2 * block, 2 * block, False),
        ]
        assert list(file.data_runs(block + 512, 2 * block)) == [(block + 512, block - 512, True)]
        assert list(file.data_runs(3 * block, 6 * block)) == [(3 * block, 3 * block, False)]
        assert list(ImageFile.data_runs(file, 0, 4 * block)) == [(0, 4 * block, True)]
    finally:
        file.close()


def test_a_flush_reaches_the_disk_only_when_something_changed_since_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QEMU skips a flush when nothing was written since the previous one (a writethrough session's
    closing flush); every kind of change, a clone made outside the file's methods included, makes
    the next flush real again."""
    synced: list[int] = []
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real_fdatasync(fd)))
    path = tmp_path / "disk.raw"
    path.write_bytes(bytes(1 << 20))
    file = OsImageFile(str(path), read_only=False)
    try:
        file.flush()
        assert synced == [], "nothing was written through this file yet"
        changes = (
            lambda: file.pwrite(b"\x5a" * 512, 4096),
            lambda: file.truncate(2 << 20),
            lambda: file.punch_hole(0, 4096),
            file.changed_externally,
        )
        for count, change in enumerate(changes, 1):
            change()
            file.flush()
            file.flush()
            assert synced == [file.fd] * count
    finally:
        file.close()
    assert path.read_bytes()[4096:4608] == b"\x5a" * 512


def test_large_writes_go_down_in_pieces_and_short_writes_are_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write larger than WRITE_PIECE reaches the file whole, in calls of at most WRITE_PIECE
    bytes (the page cache then never takes folios larger than that); a kernel that writes less
    than asked is asked again for the rest, and the bytes read back."""
    from blockfmt import fileio

    data = os.urandom(2 * fileio.WRITE_PIECE + 12345)
    sizes: list[int] = []
    real_pwrite = os.pwrite

    def short_pwrite(fd: int, buf: bytes | memoryview, offset: int) -> int:
        sizes.append(len(buf))
        return real_pwrite(fd, memoryview(buf)[: max(1, len(buf) - 4096)], offset)  # always short

    path = tmp_path / "file"
    image_file = OsImageFile(str(path), read_only=False, create=True)
    try:
        monkeypatch.setattr(fileio.os, "pwrite", short_pwrite)
        image_file.pwrite(data, 513)
        image_file.pwrite(memoryview(data)[:5000], 3 * fileio.WRITE_PIECE)
        monkeypatch.undo()
    finally:
        image_file.close()
    assert max(sizes) == fileio.WRITE_PIECE
    content = path.read_bytes()
    assert content[513 : 513 + len(data)] == data
    assert content[3 * fileio.WRITE_PIECE : 3 * fileio.WRITE_PIECE + 5000] == data[:5000]
