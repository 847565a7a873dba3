"""Sector bitmaps of a differencing VHDX (MS-VHDX §2.5.1.2, §2.5.1.1 PARTIALLY_PRESENT).

Each chunk (``chunk_ratio`` payload blocks) has one 1 MiB sector bitmap block: bit *i* (byte
``i // 8``, least significant bit first) says whether logical sector *i* of the chunk is in this file
(1) or comes from the parent (0). The BAT entry after a chunk's payload entries locates the block,
SB_BLOCK_PRESENT (6) with its offset, or SB_BLOCK_NOT_PRESENT (0) when no sector of the chunk is here.

:class:`SectorBitmaps` caches the bitmap blocks a request touches and stages bit changes in memory;
the driver writes the changed 4 KiB pages through the log in the same transaction as the BAT.
Bits are turned into runs at C speed (``int.from_bytes`` + ``bin`` + a regex), never one by one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from blockfmt.errors import CorruptImageError
from blockfmt.fileio import ImageFile

from .bat import BatTable, make_entry
from .constants import BAT_OFFSET_MASK, BAT_STATE_MASK, BitmapState, MiB

__all__ = ["BITMAP_BLOCK_SIZE", "SectorBitmaps", "bit_runs", "set_bits"]

#: a sector bitmap block is always 1 MiB (§2.5.1.2)
BITMAP_BLOCK_SIZE = 1 * MiB
#: the log writes whole 4 KiB sectors; changed bitmap bytes are staged by this page size
_PAGE = 4096
_RUNS = re.compile(r"1+|0+")


def bit_runs(
    bitmap: bytes | bytearray | memoryview, start: int, count: int
) -> Iterator[tuple[bool, int, int]]:
    """Yield ``(is_set, first_bit, bit_count)`` runs covering bits ``[start, start + count)``."""
    lo, hi = start // 8, -(-(start + count) // 8)
    value = int.from_bytes(bitmap[lo:hi], "little")
    text = format(value, f"0{(hi - lo) * 8}b")[::-1][start - lo * 8 : start - lo * 8 + count]
    for match in _RUNS.finditer(text):
        yield text[match.start()] == "1", start + match.start(), match.end() - match.start()


def set_bits(bitmap: bytearray, start: int, count: int) -> tuple[int, int]:
    """Set bits ``[start, start + count)``; returns the byte range ``[lo, hi)`` that changed."""
    end = start + count
    lo, hi = start // 8, -(-end // 8)
    if lo == hi - 1:
        bitmap[lo] |= ((1 << (end - start)) - 1) << (start % 8)
        return lo, hi
    bitmap[lo] |= (0xFF << (start % 8)) & 0xFF
    bitmap[lo + 1 : hi - 1] = b"\xff" * (hi - 1 - lo - 1)
    tail = end % 8 or 8
    bitmap[hi - 1] |= (1 << tail) - 1
    return lo, hi


class SectorBitmaps:
    """The sector bitmap blocks of one open differencing image.

    :param allocate: returns a file offset for a new 1 MiB block (the file already grown over it).
    :param check_offset: raises :class:`CorruptImageError` when a bitmap block offset is unusable.
    """

    def __init__(
        self,
        file: ImageFile,
        bat: BatTable,
        sectors_per_block: int,
        allocate: Callable[[int], int],
        check_offset: Callable[[int, str], None],
    ) -> None:
        self.file = file
        self.bat = bat
        self.sectors_per_block = sectors_per_block
        self._allocate = allocate
        self._check_offset = check_offset
        self._blocks: dict[int, bytearray] = {}
        #: chunk -> (bitmap file offset, changed page indexes) not yet written through the log
        self._dirty: dict[int, set[int]] = {}
        #: chunk -> new BAT bitmap entry not yet committed
        self.staged_entries: dict[int, int] = {}

    def _offset(self, chunk: int) -> int | None:
        entry = self.bat.bitmap_entry(chunk)
        state = entry & BAT_STATE_MASK
        if state == BitmapState.NOT_PRESENT:
            return None
        if state != BitmapState.PRESENT:
            index = self.bat.geometry.bitmap_index(chunk)
            raise CorruptImageError(f"VHDX sector bitmap entry {index} has invalid state {state}")
        offset = entry & BAT_OFFSET_MASK
        self._check_offset(offset, f"VHDX sector bitmap entry {self.bat.geometry.bitmap_index(chunk)}")
        return offset

    def _block(self, chunk: int) -> bytearray | None:
        """The chunk's bitmap (read once), or None when the chunk has none."""
        block = self._blocks.get(chunk)
        if block is None:
            offset = self._offset(chunk)
            if offset is None:
                return None
            block = bytearray(self.file.pread_exact(BITMAP_BLOCK_SIZE, offset, "VHDX sector bitmap block"))
            self._blocks[chunk] = block
        return block

    def _position(self, block: int, sector: int) -> tuple[int, int]:
        """``(chunk, bit)`` of sector *sector* of payload block *block*."""
        chunk, in_chunk = divmod(block, self.bat.geometry.chunk_ratio)
        return chunk, in_chunk * self.sectors_per_block + sector

    def runs(self, block: int, sector: int, count: int) -> Iterator[tuple[bool, int, int]]:
        """``(present, first_sector, sectors)`` runs of sectors ``[sector, sector + count)`` of *block*."""
        chunk, bit = self._position(block, sector)
        bitmap = self._block(chunk)
        if bitmap is None:
            yield False, sector, count
            return
        for present, first, n in bit_runs(bitmap, bit, count):
            yield present, first - bit + sector, n

    def check(self) -> list[str]:
        """One message per sector bitmap entry with an invalid state or an unusable offset (check)."""
        problems = []
        for chunk in range(self.bat.geometry.bitmap_blocks):
            try:
                self._offset(chunk)
            except CorruptImageError as err:
                problems.append(err.message)
        return problems

    def mark_present(self, block: int, sector: int, count: int) -> None:
        """Set the bits of sectors ``[sector, sector + count)`` of *block*, allocating the bitmap block."""
        chunk, bit = self._position(block, sector)
        bitmap = self._block(chunk)
        if bitmap is None:
            offset = self._allocate(BITMAP_BLOCK_SIZE)
            entry = make_entry(BitmapState.PRESENT, offset)
            self.bat.set_bitmap_entry(chunk, entry)
            self.staged_entries[chunk] = entry
            bitmap = self._blocks[chunk] = bytearray(BITMAP_BLOCK_SIZE)
        lo, hi = set_bits(bitmap, bit, count)
        self._dirty.setdefault(chunk, set()).update(range(lo // _PAGE, (hi - 1) // _PAGE + 1))

    def pending_updates(self) -> list[tuple[int, bytes]]:
        """``(file_offset, bytes)`` of every changed bitmap page, for the next log transaction."""
        updates = []
        for chunk, pages in sorted(self._dirty.items()):
            base = self.bat.bitmap_entry(chunk) & BAT_OFFSET_MASK
            bitmap = self._blocks[chunk]
            for page in sorted(pages):
                updates.append((base + page * _PAGE, bytes(bitmap[page * _PAGE : (page + 1) * _PAGE])))
        return updates

    def committed(self) -> None:
        """Forget the staged changes once they are durable."""
        self._dirty.clear()
        self.staged_entries.clear()
