"""The open ``example`` image: reads and writes through the block table."""

from __future__ import annotations

import array
import sys
from collections.abc import Iterator

from blockfmt import CheckResult, CorruptImageError, Extent, FormatDriver, ImageFile, ImageInfo

from .layout import ENTRY, HEADER_SIZE, Header, parse_header


class ExampleDriver(FormatDriver):
    """The block table lives in memory; a write to an unallocated block appends it and then
    writes its table entry, so a crash in between leaks space but never shows stale data."""

    def __init__(self, file: ImageFile, *, read_only: bool) -> None:
        super().__init__(file, read_only=read_only)
        self.header: Header = parse_header(file.pread(HEADER_SIZE, 0))
        self.size = self.header.size
        self.table = array.array(
            "Q", file.pread_exact(self.header.blocks * ENTRY.size, HEADER_SIZE, "block table")
        )
        if sys.byteorder == "big":  # the table is little-endian on disk
            self.table.byteswap()
        self.file_end = max(file.size(), self.header.data_start)

    def _pieces(self, offset: int, length: int) -> Iterator[tuple[int, int, int, int]]:
        """``(block, offset in block, length, file offset or 0)`` covering the range."""
        bs = self.header.block_size
        end = offset + length
        while offset < end:
            block, within = divmod(offset, bs)
            count = min(bs - within, end - offset)
            yield block, within, count, self.table[block]
            offset += count

    def readinto(self, offset: int, buf: memoryview) -> None:
        done = 0
        for _, within, count, host in self._pieces(offset, len(buf)):
            piece = buf[done : done + count]
            if host:
                if host + within + count > self.file_end:
                    raise CorruptImageError(f"example data block at {host} lies beyond the end of the file")
                if self.file.preadinto(piece, host + within) < count:
                    raise CorruptImageError(f"example data block at {host} lies beyond the end of the file")
            else:
                piece[:] = bytes(count)
            done += count

    def write(self, offset: int, data: memoryview) -> None:
        done = 0
        for block, within, count, host in self._pieces(offset, len(data)):
            if not host:
                host = self.file_end
                self.file.truncate(host + self.header.block_size)
                self.file_end = host + self.header.block_size
                self.file.pwrite(data[done : done + count], host + within)
                self.file.pwrite(ENTRY.pack(host), HEADER_SIZE + block * ENTRY.size)
                self.table[block] = host
            else:
                self.file.pwrite(data[done : done + count], host + within)
            done += count

    def block_status(self, offset: int, length: int) -> Iterator[Extent]:
        for block, within, count, host in self._pieces(offset, length):
            start = block * self.header.block_size + within
            if host:
                yield Extent(start, count, data=True, zero=False, host_offset=host + within)
            else:
                yield Extent(start, count, data=False, zero=True)

    def info(self) -> ImageInfo:
        return ImageInfo(cluster_size=self.header.block_size)

    def check(self) -> CheckResult:
        """Every allocated block lies in the data area, inside the file, and belongs to one entry."""
        result = CheckResult()
        seen: dict[int, int] = {}
        bs = self.header.block_size
        for block, host in enumerate(self.table):
            if not host:
                continue
            if host < self.header.data_start or host % 512 or host + bs > self.file_end:
                result.messages.append(f"ERROR block {block}: offset {host} is outside the data area")
                result.corruptions += 1
            elif host in seen:
                result.messages.append(
                    f"ERROR block {block}: offset {host} is also used by block {seen[host]}"
                )
                result.corruptions += 1
            else:
                seen[host] = block
        result.allocated_clusters = len(seen)
        result.total_clusters = len(self.table)
        return result
