"""The VDI block map, read lazily in pages with a bounded cache.

The map holds one little-endian uint32 per block of the virtual disk (VDICore.h ``paBlocks``): the
index of the block in the data area, or :data:`BMAP_UNALLOCATED` / :data:`BMAP_DISCARDED`. QEMU reads
the whole map at open (2 GiB for its largest image); here only the pages a request touches are read,
and at most :data:`MAX_CACHED_PAGES` stay in memory, so opening a 64 TiB image costs one sector.
"""

from __future__ import annotations

import array
import sys
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from blockfmt.errors import CorruptImageError
from blockfmt.fileio import ImageFile

from .constants import BMAP_ENTRY_SIZE, is_allocated

__all__ = ["MAX_CACHED_PAGES", "PAGE_ENTRIES", "BlockMap", "Run", "entries_from_bytes", "entries_to_bytes"]

#: entries per page: 64 KiB of map, 16 GiB of disk with 1 MiB blocks
PAGE_ENTRIES = 16384
#: pages kept in memory (4 MiB of map); least recently used ones are dropped
MAX_CACHED_PAGES = 64

_ENTRY_TYPECODE = "I"
_BIG_ENDIAN_HOST = sys.byteorder == "big"
_PROBE_ENTRIES = 16


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive blocks ``[first, first + count)`` of one kind.

    :ivar entry: the data-area index of the first block when the blocks are allocated and stored one
        after the other; ``None`` for a run of unallocated or discarded blocks.
    :ivar repeated: every block of the run names the same data block *entry* (a corrupt map,
        found only when :meth:`BlockMap.runs` is asked to coalesce them).
    """

    first: int
    count: int
    entry: int | None
    repeated: bool = False


def entries_from_bytes(raw: bytes | bytearray) -> array.array[int]:
    """Little-endian map bytes as host-order entries."""
    entries = array.array(_ENTRY_TYPECODE)
    entries.frombytes(raw)
    if _BIG_ENDIAN_HOST:  # pragma: no cover - the map is little-endian on disk
        entries.byteswap()
    return entries


def entries_to_bytes(entries: array.array[int]) -> bytes:
    """Host-order entries as little-endian map bytes."""
    if _BIG_ENDIAN_HOST:  # pragma: no cover
        entries = array.array(entries.typecode, entries)
        entries.byteswap()
    return entries.tobytes()


def _same_prefix(entries: array.array[int], start: int, stop: int) -> int:
    """How many entries from *start* (before *stop*) equal ``entries[start]``, at least 1.

    C-speed comparisons of the map bytes with the entry repeated: a short probe first, so that a
    fragmented map does not copy a whole page per entry, then halving to the first other entry.
    """
    known = 1
    for limit in (min(stop, start + _PROBE_ENTRIES), stop):
        chunk = entries[start:limit].tobytes()
        repeated = chunk[:BMAP_ENTRY_SIZE] * (limit - start)
        if chunk == repeated:
            known = limit - start
            continue
        other = limit - start  # the first *other* entries are not all equal
        while other - known > 1:
            middle = (known + other) // 2
            if chunk.startswith(repeated[: middle * BMAP_ENTRY_SIZE]):
                known = middle
            else:
                other = middle
        return known
    return known


class BlockMap:
    """The block map of one open image: lookups, run coalescing, and entry updates.

    :param file: the image file (not owned).
    :param offset: ``offset_bmap``: where entry 0 is stored.
    :param count: ``blocks_in_image``: the number of entries.
    """

    def __init__(self, file: ImageFile, offset: int, count: int) -> None:
        self.file = file
        self.offset = offset
        self.count = count
        self._pages: OrderedDict[int, array.array[int]] = OrderedDict()

    # -- reading ----------------------------------------------------------------

    def _read_page(self, page: int) -> array.array[int]:
        """Read page *page* from the file; a page cut short by end of file keeps only whole entries."""
        first = page * PAGE_ENTRIES
        length = min(PAGE_ENTRIES, self.count - first) * BMAP_ENTRY_SIZE
        buf = bytearray(length)
        got = self.file.preadinto(buf, self.offset + first * BMAP_ENTRY_SIZE)
        del buf[got - got % BMAP_ENTRY_SIZE :]
        return entries_from_bytes(buf)

    def _page(self, page: int) -> array.array[int]:
        entries = self._pages.get(page)
        if entries is None:
            entries = self._read_page(page)
            self._pages[page] = entries
            if len(self._pages) > MAX_CACHED_PAGES:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(page)
        return entries

    def _beyond_eof(self, index: int) -> CorruptImageError:
        return CorruptImageError(f"VDI block map entry {index} lies beyond the end of the file")

    def get(self, index: int) -> int:
        """The entry of block *index* (``0 <= index < count``).

        :raises CorruptImageError: when the entry lies beyond the end of the file.
        """
        page, slot = divmod(index, PAGE_ENTRIES)
        entries = self._page(page)
        if slot >= len(entries):
            raise self._beyond_eof(index)
        return entries[slot]

    def runs(self, first: int, count: int, *, repeats: bool = False) -> Iterator[Run]:
        """Split blocks ``[first, first + count)`` into maximal :class:`Run` s.

        Allocated blocks join a run while their data-area indexes follow each other, so a run is one
        contiguous range of the file. Long stretches of unallocated (or discarded) blocks are
        skipped at C speed (:func:`_same_prefix`), so mapping a huge sparse image does not walk its
        entries one by one. With *repeats*, a stretch of blocks that all name one data block (a
        corrupt map: millions of zeros name block 0) is one ``repeated`` run, found the same way.

        :raises CorruptImageError: when an entry needed lies beyond the end of the file.
        """
        end = first + count
        run_first, run_count, run_entry = first, 0, None
        index = first
        while index < end:
            page, slot = divmod(index, PAGE_ENTRIES)
            entries = self._page(page)
            stop = min(PAGE_ENTRIES, end - page * PAGE_ENTRIES)
            if stop > len(entries):
                if slot >= len(entries):
                    raise self._beyond_eof(index)
                stop = len(entries)
            while slot < stop:
                entry = entries[slot]
                if not is_allocated(entry):
                    if run_count and run_entry is not None:
                        yield Run(run_first, run_count, run_entry)
                        run_first, run_count, run_entry = index, 0, None
                    skip = _same_prefix(entries, slot, stop)
                    run_count += skip
                elif repeats and slot + 1 < stop and entries[slot + 1] == entry:
                    if run_count:
                        yield Run(run_first, run_count, run_entry)
                    skip = _same_prefix(entries, slot, stop)
                    yield Run(index, skip, entry, repeated=True)
                    run_first, run_count, run_entry = index + skip, 0, None
                else:
                    if run_count and (run_entry is None or run_entry + run_count != entry):
                        yield Run(run_first, run_count, run_entry)
                        run_first, run_count = index, 0
                    if run_count == 0:
                        run_entry = entry
                    run_count += 1
                    skip = 1
                slot += skip
                index += skip
        if run_count:
            yield Run(run_first, run_count, run_entry)

    def pages(self) -> Iterator[tuple[int, array.array[int]]]:
        """Stream the whole map as ``(first_index, entries)`` without filling the cache (for check).

        :raises CorruptImageError: when the map is cut short by the end of the file.
        """
        for page in range(-(-self.count // PAGE_ENTRIES)):
            entries = self._pages.get(page)
            if entries is None:
                entries = self._read_page(page)
            first = page * PAGE_ENTRIES
            if len(entries) < min(PAGE_ENTRIES, self.count - first):
                raise self._beyond_eof(first + len(entries))
            yield first, entries

    def owners(self, entries: list[int]) -> dict[int, list[int]]:
        """Map each data-area index in *entries* to the blocks whose entry names it (C-speed find)."""
        found: dict[int, list[int]] = {}
        if not entries:
            return found
        needles = {entry: entry.to_bytes(BMAP_ENTRY_SIZE, "little") for entry in entries}
        for first, page in self.pages():
            raw = entries_to_bytes(page)
            for entry, needle in needles.items():
                at = raw.find(needle)
                while at >= 0:
                    if at % BMAP_ENTRY_SIZE == 0:
                        found.setdefault(entry, []).append(first + at // BMAP_ENTRY_SIZE)
                    at = raw.find(needle, at + 1)
        return found

    # -- writing ----------------------------------------------------------------

    def set_range(self, first: int, values: Sequence[int]) -> None:
        """Store *values* as the entries from *first* on: one write to the file, then the cached
        pages they fall in, a slice each (a repair rewrites whole pages of a hostile map)."""
        stored = array.array(_ENTRY_TYPECODE, values)
        self.file.pwrite(entries_to_bytes(stored), self.offset + first * BMAP_ENTRY_SIZE)
        index, end = first, first + len(stored)
        while index < end:
            page, slot = divmod(index, PAGE_ENTRIES)
            stop = min(PAGE_ENTRIES, slot + end - index)
            entries = self._pages.get(page)
            if entries is not None:
                if stop <= len(entries):
                    entries[slot:stop] = stored[index - first : index - first + stop - slot]
                else:  # the page was cut by end of file when read; re-read it next time
                    del self._pages[page]
            index += stop - slot
