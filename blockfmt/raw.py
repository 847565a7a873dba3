"""The built-in ``raw`` format: the virtual disk is the file, byte for byte.

Registered by the host before any entry-point plugin, and held to the same hook contract.
Sparse-aware: ``block_status`` reports holes with ``SEEK_DATA``/``SEEK_HOLE``, write-zeroes with
unmap punches holes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .driver import CreateOption, Extent, FormatDriver, FormatSpec
from .fileio import ImageFile
from .markers import hookimpl

FORMAT_NAME = "raw"
#: bytes QEMU's file-posix allocates at the start of a new image (``allocate_first_block``)
FIRST_BLOCK_SIZE = 4096
RAW_SPEC = FormatSpec(
    FORMAT_NAME,
    "Raw disk image: the file is the disk",
    (CreateOption("size", "size", "Virtual disk size"),),
    data_only=True,
)


class RawDriver(FormatDriver):
    """Virtual offset equals file offset; the disk size is the file size."""

    def __init__(self, file: ImageFile, *, read_only: bool) -> None:
        super().__init__(file, read_only=read_only)
        self.size = file.size()

    def readinto(self, offset: int, buf: memoryview) -> None:
        got = self.file.preadinto(buf, offset)
        if got < len(buf):  # the file shrank under us: what is gone reads as zeros
            buf[got:] = bytes(len(buf) - got)

    def write(self, offset: int, data: memoryview) -> None:
        self.file.pwrite(data, offset)

    def write_zeroes(self, offset: int, length: int, *, unmap: bool = False) -> None:
        self.file.punch_hole(offset, length)

    def discard(self, offset: int, length: int) -> None:
        self.file.punch_hole(offset, length)

    def truncate(self, size: int) -> None:
        """The file is the disk: cut or extend it (the extension is a hole, reading zeros)."""
        self.file.truncate(size)
        self.size = size

    def block_status(self, offset: int, length: int) -> Iterator[Extent]:
        for pos, count, is_data in self.file.data_runs(offset, offset + length):
            yield Extent(pos, count, data=is_data, zero=not is_data, host_offset=pos)


@hookimpl
def blockfmt_formats() -> list[FormatSpec]:
    return [RAW_SPEC]


@hookimpl
def blockfmt_probe(head: bytes) -> tuple[str, int]:
    """Claim everything with the lowest score: raw is the fallback, as in QEMU."""
    return (FORMAT_NAME, 1)


@hookimpl
def blockfmt_open(file: ImageFile, read_only: bool, options: dict[str, Any]) -> RawDriver:
    return RawDriver(file, read_only=read_only)


@hookimpl
def blockfmt_create(file: ImageFile, size: int) -> bool:
    file.truncate(size)
    # Like QEMU's file-posix, allocate the first block so that file systems which report a fresh
    # file as one hole still give probing and alignment detection real bytes to read.
    head = min(size, FIRST_BLOCK_SIZE)
    if head:
        file.pwrite(bytes(head), 0)
    return True
