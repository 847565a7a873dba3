"""Sector bitmaps of a differencing VHDX (MS-VHDX §2.5.1.2, §2.5.1.1 PARTIALLY_PRESENT).

Each chunk (``chunk_ratio`` payload blocks) has one 1 MiB sector bitmap block: bit *i* (byte
``i // 8``, least significant bit first) says whether logical sector *i* of the chunk is in this file
(1) or comes from the parent (0). The BAT entry after a chunk's payload entries locates the block,
SB_BLOCK_PRESENT (6) with its offset, or SB_BLOCK_NOT_PRESENT (0) when no sector of the chunk is here.

:class:`SectorBitmaps` reads the bitmaps in 64 KiB pages (the bits of one payload block never cross
a page: a block has at most 2**19 sectors) and keeps at most :data:`MAX_CACHED_PAGES` of them, so
memory does not grow with the disk. Bit changes are staged in the cached pages, which stay until
the driver has written the changed 4 KiB log sectors through the log in the same transaction as the
BAT.
Bits are turned into runs at C speed (``int.from_bytes`` + ``bin`` + a regex), never one by one.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterator

from blockfmt.errors import CorruptImageError

from .bat import BatTable, make_entry
from .constants import BAT_OFFSET_MASK, BAT_STATE_MASK, LOG_SECTOR_SIZE, BitmapState, KiB, MiB

__all__ = ["BITMAP_BLOCK_SIZE", "MAX_CACHED_PAGES", "PAGE_SIZE", "SectorBitmaps", "bit_runs", "set_bits"]

#: a sector bitmap block is always 1 MiB (§2.5.1.2)
BITMAP_BLOCK_SIZE = 1 * MiB
#: bitmap bytes read and cached together: the bits of the largest block (256 MiB of 512-byte sectors)
PAGE_SIZE = 64 * KiB
_PAGE_BITS = PAGE_SIZE * 8
#: bitmap pages kept in memory (4 MiB); pages with staged changes are never dropped
MAX_CACHED_PAGES = 64
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

    :param read: fills a buffer from a file offset (short reads as zeros).
    :param allocate: returns a file offset for a new 1 MiB block (the file already grown over it).
    :param check_offset: raises :class:`CorruptImageError` when a bitmap block offset is unusable.
    """

    def __init__(
        self,
        bat: BatTable,
        sectors_per_block: int,
        read: Callable[[memoryview, int], None],
        allocate: Callable[[int], int],
        check_offset: Callable[[int, str], None],
    ) -> None:
        self.bat = bat
        self.sectors_per_block = sectors_per_block
        self._read = read
        self._allocate = allocate
        self._check_offset = check_offset
        #: (chunk, page) -> the page's bitmap bytes
        self._pages: OrderedDict[tuple[int, int], bytearray] = OrderedDict()
        #: (chunk, page) -> indexes of its changed log sectors, not yet written through the log
        self._dirty: dict[tuple[int, int], set[int]] = {}
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

    def _page(self, chunk: int, page: int) -> bytearray | None:
        """Page *page* of the chunk's bitmap (cached), or None when the chunk has no bitmap."""
        key = (chunk, page)
        cached = self._pages.get(key)
        if cached is not None:
            self._pages.move_to_end(key)
            return cached
        offset = self._offset(chunk)
        if offset is None:
            return None
        cached = self._pages[key] = bytearray(PAGE_SIZE)
        self._read(memoryview(cached), offset + page * PAGE_SIZE)
        if len(self._pages) > MAX_CACHED_PAGES:
            for old in self._pages:
                if old not in self._dirty and old != key:
                    del self._pages[old]
                    break
        return cached

    def _position(self, block: int, sector: int) -> tuple[int, int, int]:
        """``(chunk, page, bit in the page)`` of sector *sector* of payload block *block*."""
        chunk, in_chunk = divmod(block, self.bat.geometry.chunk_ratio)
        page, bit = divmod(in_chunk * self.sectors_per_block + sector, _PAGE_BITS)
        return chunk, page, bit

    def runs(self, block: int, sector: int, count: int) -> Iterator[tuple[bool, int, int]]:
        """``(present, first_sector, sectors)`` runs of sectors ``[sector, sector + count)`` of *block*."""
        chunk, page, bit = self._position(block, sector)
        bitmap = self._page(chunk, page)
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
        chunk, page, bit = self._position(block, sector)
        if self._offset(chunk) is None:
            entry = make_entry(BitmapState.PRESENT, self._allocate(BITMAP_BLOCK_SIZE))
            self.bat.set_bitmap_entry(chunk, entry)
            self.staged_entries[chunk] = entry
        bitmap = self._page(chunk, page)
        assert bitmap is not None
        lo, hi = set_bits(bitmap, bit, count)
        sectors = range(lo // LOG_SECTOR_SIZE, (hi - 1) // LOG_SECTOR_SIZE + 1)
        self._dirty.setdefault((chunk, page), set()).update(sectors)

    @property
    def dirty_pages(self) -> int:
        """How many cached pages hold changes not yet committed."""
        return len(self._dirty)

    def pending_updates(self) -> list[tuple[int, bytes]]:
        """``(file_offset, bytes)`` of every changed bitmap sector, for the next log transaction."""
        updates = []
        for (chunk, page), sectors in sorted(self._dirty.items()):
            base = (self.bat.bitmap_entry(chunk) & BAT_OFFSET_MASK) + page * PAGE_SIZE
            bitmap = self._pages[(chunk, page)]
            for n in sorted(sectors):
                piece = bitmap[n * LOG_SECTOR_SIZE : (n + 1) * LOG_SECTOR_SIZE]
                updates.append((base + n * LOG_SECTOR_SIZE, bytes(piece)))
        return updates

    def committed(self) -> None:
        """Forget the staged changes once they are durable; their pages may leave the cache again."""
        self._dirty.clear()
        self.staged_entries.clear()
        while len(self._pages) > MAX_CACHED_PAGES:
            self._pages.popitem(last=False)
