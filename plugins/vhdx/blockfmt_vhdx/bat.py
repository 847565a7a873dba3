"""BAT geometry and the BAT, read in pages with a bounded cache (MS-VHDX §2.5).

The BAT interleaves one sector bitmap entry after every *chunk ratio* payload entries. A 64 TiB
disk with 1 MiB blocks has 64 Mi entries (512 MiB): QEMU reads them all at open, here only the pages
a request touches are read, and at most :data:`MAX_CACHED_PAGES` stay in memory, so memory does not
grow with the virtual size. A page holds whole chunks (its payload entries and their bitmap
entries).

Entries are never Python objects: a :class:`BatPage` keeps the raw little-endian bytes (what goes
back to disk) with a uint64 view over them, plus one byte per payload block naming its *kind*
(zeros, data, invalid, parent, partial), so runs of equal blocks are found by the regex engine at C
speed instead of a Python loop per block.
"""

from __future__ import annotations

import array
import re
import sys
from collections import OrderedDict
from collections.abc import Iterator

from blockfmt.errors import UnsupportedFeatureError
from blockfmt.fileio import ImageFile
from blockfmt.records import FrozenRecord

from .constants import (
    BAT_ENTRY_SIZE,
    BAT_OFFSET_MASK,
    BAT_STATE_MASK,
    MAX_SECTORS_PER_BLOCK,
    ZERO_READ_STATES,
    BatState,
)

__all__ = [
    "KIND_DATA",
    "KIND_INVALID",
    "KIND_PARENT",
    "KIND_PARTIAL",
    "KIND_ZERO",
    "MAX_CACHED_PAGES",
    "PAGE_ENTRIES",
    "BatGeometry",
    "BatPage",
    "BatTable",
    "make_entry",
]

#: payload block kinds, one byte each in :attr:`BatTable.kinds`
KIND_ZERO = ord("Z")
KIND_DATA = ord("D")
KIND_INVALID = ord("X")
#: differencing images only: NOT_PRESENT (the parent's bytes) and PARTIALLY_PRESENT (sector bitmap)
KIND_PARENT = ord("P")
KIND_PARTIAL = ord("B")


def _kind_of_state(state: int, has_parent: bool) -> int:
    """NOT_PRESENT reads the parent in a differencing image (§2.5.1.1); PARTIALLY_PRESENT is valid
    only there. Other zero-reading states (ZERO, UNMAPPED, UNDEFINED) read zeros in both, as Hyper-V's
    trim leaves them and dissect.hypervisor reads them."""
    if state == BatState.FULLY_PRESENT:
        return KIND_DATA
    if has_parent and state == BatState.NOT_PRESENT:
        return KIND_PARENT
    if has_parent and state == BatState.PARTIALLY_PRESENT:
        return KIND_PARTIAL
    return KIND_ZERO if state in ZERO_READ_STATES else KIND_INVALID


#: per has_parent: the kind of each state, and the kind of each low byte of an entry
_KIND_OF_STATE = {
    flag: bytes(_kind_of_state(state, flag) for state in range(BAT_STATE_MASK + 1)) for flag in (False, True)
}
_KIND_TABLE = {
    flag: bytes(kinds[b & BAT_STATE_MASK] for b in range(256)) for flag, kinds in _KIND_OF_STATE.items()
}
_RUNS = re.compile(rb"Z+|D+|X+|P+|B+")

#: BAT entries per page, rounded down to whole chunks (at least one): 64 KiB of BAT, 8 GiB of disk
#: with 1 MiB blocks
PAGE_ENTRIES = 8192
#: pages kept in memory (about 4.5 MiB with their kind bytes); the least recently used one is dropped,
#: never one holding entries not yet committed to disk
MAX_CACHED_PAGES = 64
#: BAT bytes read at once when the whole BAT is streamed (check, allocation): larger reads, fewer pages
STREAM_BYTES = 4 << 20
#: a request for the runs of more pages than this streams them instead of going through the cache
_STREAM_ABOVE_PAGES = 16


def make_entry(state: int, file_offset: int = 0) -> int:
    """Pack a BAT entry: FileOffsetMB in bits 20-63, state in bits 0-2 (§2.5.1)."""
    return (file_offset & BAT_OFFSET_MASK) | (state & BAT_STATE_MASK)


class BatGeometry(FrozenRecord):
    """Sizes that follow from the metadata: chunk ratio, block counts, BAT entry count (§2.5).

    :ivar disk_size: virtual disk size in bytes.
    """

    _fields = ("disk_size", "block_size", "logical_sector_size", "has_parent")
    __slots__ = _fields
    disk_size: int
    block_size: int
    logical_sector_size: int
    has_parent: bool

    def __init__(
        self, disk_size: int, block_size: int, logical_sector_size: int, has_parent: bool = False
    ) -> None:
        self._fill(disk_size, block_size, logical_sector_size, has_parent)

    @property
    def chunk_ratio(self) -> int:
        """Payload blocks per sector bitmap block: (2**23 * LogicalSectorSize) / BlockSize (§2.5)."""
        return MAX_SECTORS_PER_BLOCK * self.logical_sector_size // self.block_size

    @property
    def payload_blocks(self) -> int:
        return -(-self.disk_size // self.block_size)

    @property
    def bitmap_blocks(self) -> int:
        return -(-self.payload_blocks // self.chunk_ratio)

    @property
    def entry_count(self) -> int:
        """Entries the BAT must hold (§2.5): up to the last payload entry, or every bitmap entry of a
        differencing file."""
        if self.has_parent:
            return self.bitmap_blocks * (self.chunk_ratio + 1)
        if not self.payload_blocks:
            return 0
        return self.payload_index(self.payload_blocks - 1) + 1

    def payload_index(self, block: int) -> int:
        """BAT index of payload block *block*: skip one bitmap entry per full chunk before it."""
        return block + block // self.chunk_ratio

    def bitmap_index(self, chunk: int) -> int:
        """BAT index of the sector bitmap entry of chunk *chunk* (after its payload entries)."""
        return chunk * (self.chunk_ratio + 1) + self.chunk_ratio

    def block_length(self, block: int) -> int:
        """Bytes of the virtual disk in payload block *block* (the last one may be short)."""
        return min(self.block_size, self.disk_size - block * self.block_size)


def _continued(raw: memoryview, first: int, step: int, count: int) -> int:
    """How many of the *count* entries in *raw* (at least 1) go on from *first* by *step* each.

    Prefixes of doubling length are compared until one differs, then the break is found by binary
    search within the last: the cost follows the run found, not *count* (comparing the whole
    stretch up front made a BAT of one-block runs quadratic per chunk).
    """
    good, size = 1, 2
    expected = b""
    while good < count:
        size = min(size, count)
        expected = array.array("Q", range(first, first + size * step, step)).tobytes()
        if raw[: len(expected)] != expected:
            break
        good, size = size, size * 2
    else:
        return count
    lo, hi = good, size
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if raw[: mid * BAT_ENTRY_SIZE] == expected[: mid * BAT_ENTRY_SIZE]:
            lo = mid
        else:
            hi = mid
    return lo


class BatPage:
    """The entries of some whole chunks: raw bytes, a uint64 view, one kind byte per payload block.

    :ivar first_block: the payload block of the page's first payload entry.
    :ivar end_block: one past its last payload block.
    """

    __slots__ = ("_chunk_ratio", "end_block", "entries", "first_block", "kinds", "raw", "uniform")

    def __init__(self, raw: bytearray, first_block: int, chunk_ratio: int, has_parent: bool) -> None:
        self.raw = raw
        self.first_block = first_block
        self._chunk_ratio = chunk_ratio
        self.entries = memoryview(raw).cast("Q")
        #: the one kind of every block when all have it (most of a new image), else None
        self.uniform: int | None = None
        table = _KIND_TABLE[has_parent]
        chunk_bytes = (chunk_ratio + 1) * BAT_ENTRY_SIZE
        if len(raw) > chunk_bytes and raw.startswith(memoryview(raw)[chunk_bytes:]):
            # every chunk repeats the first (one comparison, no copy): look at the first only
            head = raw[:chunk_bytes:BAT_ENTRY_SIZE].translate(table)[:chunk_ratio]
            if head.count(head[0]) == chunk_ratio:
                self.uniform = head[0]
                chunks, rest = divmod(len(self.entries), chunk_ratio + 1)
                self.kinds = bytearray(head[:1]) * (chunks * chunk_ratio + rest)
        if self.uniform is None:
            low = raw[0::BAT_ENTRY_SIZE].translate(table)
            if len(low) <= chunk_ratio:
                self.kinds = low
            else:
                stride = chunk_ratio + 1
                self.kinds = bytearray().join(low[i : i + chunk_ratio] for i in range(0, len(low), stride))
        self.end_block = first_block + len(self.kinds)

    def slot(self, block: int) -> int:
        """Index in :attr:`entries` of payload block *block* (one of this page's)."""
        local = block - self.first_block
        return local + local // self._chunk_ratio

    def runs(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """``(kind, start_block, end_block)`` for maximal runs of one kind in ``[start, end)``,
        clipped to this page."""
        if self.uniform is not None:
            lo, hi = max(start, self.first_block), min(end, self.end_block)
            if lo < hi:
                yield self.uniform, lo, hi
            return
        base, kinds = self.first_block, self.kinds
        for match in _RUNS.finditer(kinds, max(start, base) - base, min(end, self.end_block) - base):
            yield kinds[match.start()], base + match.start(), base + match.end()

    def host_runs(self, start: int, end: int, step: int) -> Iterator[tuple[int, int, int]]:
        """``(first_block, count, entry)`` for blocks ``[start, end)`` of this page, split where the
        entries stop following each other by *step* (a run's blocks lie one after the other in the
        file when *entry* is a data entry). Compared as byte strings, not entry by entry."""
        block = max(start, self.first_block)
        end = min(end, self.end_block)
        while block < end:
            slot = self.slot(block)
            local = block - self.first_block
            count = min(end - block, self._chunk_ratio - local % self._chunk_ratio)  # to the bitmap entry
            raw = self.entries[slot : slot + count].cast("B")
            pos = 0
            while pos < count:
                first = self.entries[slot + pos]
                run = _continued(raw[pos * BAT_ENTRY_SIZE :], first, step, count - pos)
                yield block + pos, run, first
                pos += run
            block += count

    def highest_offset(self, limit: int) -> int:
        """The highest file offset below *limit* (a multiple of 1 MiB) that a FULLY_PRESENT,
        PARTIALLY_PRESENT or sector bitmap entry of this page names; 0 when none does.

        The largest entry is usually the answer (offsets are the high bits); only a page whose
        largest entry is of another state or past *limit* is searched entry by entry.
        """
        if self.uniform is not None:
            return 0
        top = max(self.entries)
        if not (top < limit and top & BAT_STATE_MASK >= BatState.FULLY_PRESENT):
            top = max(
                (e for e in self.entries if e < limit and e & BAT_STATE_MASK >= BatState.FULLY_PRESENT),
                default=0,
            )
        return top & BAT_OFFSET_MASK


class BatTable:
    """The BAT of one open image: entry lookups and updates, runs of blocks, streaming for check.

    Pages are read on first use from *file* at *offset*; a page cut short by the end of the file
    reads as zeros past it (open checked the BAT lies inside the file; one that shrank since reads
    as unallocated, and every data offset is checked against the file size before use).
    Updated entries stay in memory, their pages pinned, until :meth:`committed` says the log wrote
    them to disk.

    :param file: the image file (not owned); :param offset: where BAT entry 0 is stored.
    """

    def __init__(self, geometry: BatGeometry, file: ImageFile, offset: int) -> None:
        if sys.byteorder != "little":
            raise UnsupportedFeatureError("the VHDX plugin needs a little-endian host")
        self.geometry = geometry
        self.file = file
        self.offset = offset
        self._chunk_ratio = geometry.chunk_ratio
        self._entry_count = geometry.entry_count
        chunks_per_page = max(1, PAGE_ENTRIES // (self._chunk_ratio + 1))
        #: payload blocks per page, and BAT entries per page
        self.blocks_per_page = chunks_per_page * self._chunk_ratio
        self._entries_per_page = chunks_per_page * (self._chunk_ratio + 1)
        self._kind_of_state = _KIND_OF_STATE[geometry.has_parent]
        self._pages: OrderedDict[int, BatPage] = OrderedDict()
        #: pages holding entries not yet on disk: never dropped from the cache
        self._pinned: set[int] = set()

    # -- pages --------------------------------------------------------------------------------

    def _read(self, first_entry: int, count: int, first_block: int, raw: bytearray | None = None) -> BatPage:
        """Entries ``[first_entry, first_entry + count)`` (whole chunks) from the file, into *raw*
        (a new buffer when None or not of that size); what lies past the end of the file reads as
        zeros."""
        if raw is None or len(raw) != count * BAT_ENTRY_SIZE:
            raw = bytearray(count * BAT_ENTRY_SIZE)
        got = self.file.preadinto(raw, self.offset + first_entry * BAT_ENTRY_SIZE)
        if got < len(raw):
            raw[got:] = bytes(len(raw) - got)
        return BatPage(raw, first_block, self._chunk_ratio, self.geometry.has_parent)

    def page(self, page: int) -> BatPage:
        """Page number *page*, from the cache or read (and cached, dropping the oldest unpinned one)."""
        cached = self._pages.get(page)
        if cached is not None:
            self._pages.move_to_end(page)
            return cached
        first = page * self._entries_per_page
        count = min(self._entries_per_page, self._entry_count - first)
        cached = self._pages[page] = self._read(first, count, page * self.blocks_per_page)
        if len(self._pages) > MAX_CACHED_PAGES:
            for old in self._pages:
                if old not in self._pinned and old != page:
                    del self._pages[old]
                    break
        return cached

    def stream(self, first_block: int = 0, end_block: int | None = None) -> Iterator[BatPage]:
        """The BAT from *first_block* to *end_block* (the end of the disk), in order, in pages of up
        to :data:`STREAM_BYTES`, without filling the cache (check, allocation, mapping a whole disk);
        entries not yet committed are taken from the cache. The pages share one buffer: each is
        valid until the next one is produced."""
        if end_block is None:
            end_block = self.geometry.payload_blocks
        step = max(1, STREAM_BYTES // BAT_ENTRY_SIZE // self._entries_per_page)
        buffer = bytearray(min(step * self._entries_per_page, self._entry_count) * BAT_ENTRY_SIZE)
        last = -(-end_block // self.blocks_per_page)
        for page in range(first_block // self.blocks_per_page, last, step):
            first = page * self._entries_per_page
            count = min(min(step, last - page) * self._entries_per_page, self._entry_count - first)
            slab = self._read(first, count, page * self.blocks_per_page, buffer)
            pinned = [n for n in range(page, page + step) if n in self._pinned]
            if pinned:
                for n in pinned:
                    at = (n - page) * self._entries_per_page * BAT_ENTRY_SIZE
                    raw = self._pages[n].raw
                    slab.raw[at : at + len(raw)] = raw
                slab = BatPage(slab.raw, slab.first_block, self._chunk_ratio, self.geometry.has_parent)
            yield slab

    @property
    def pinned_pages(self) -> int:
        """How many pages hold entries not yet committed."""
        return len(self._pinned)

    def over_budget(self, other_pages: int = 0) -> bool:
        """Whether the pinned pages, with *other_pages* held elsewhere for the same commit (sector
        bitmap pages), are more than the cache holds: time to commit."""
        return len(self._pinned) + other_pages > MAX_CACHED_PAGES

    def committed(self) -> None:
        """The updated entries are on disk now: their pages may leave the cache again."""
        self._pinned.clear()
        while len(self._pages) > MAX_CACHED_PAGES:
            self._pages.popitem(last=False)

    # -- entries ------------------------------------------------------------------------------

    def entry(self, block: int) -> int:
        """The raw entry of payload block *block* (the read path's lookup: a cached page is used
        without a call to :meth:`page`)."""
        number, local = divmod(block, self.blocks_per_page)
        page = self._pages.get(number)
        if page is None:
            page = self.page(number)
        else:
            self._pages.move_to_end(number)
        return page.entries[local + local // self._chunk_ratio]

    def state(self, block: int) -> int:
        return self.entry(block) & BAT_STATE_MASK

    def file_offset(self, block: int) -> int:
        return self.entry(block) & BAT_OFFSET_MASK

    def set_entry(self, block: int, value: int) -> int:
        """Store *value* for payload block *block* (in memory, pinned); returns its BAT index."""
        number, local = divmod(block, self.blocks_per_page)
        page = self.page(number)
        page.entries[local + local // self._chunk_ratio] = value
        page.kinds[local] = self._kind_of_state[value & BAT_STATE_MASK]
        page.uniform = None
        self._pinned.add(number)
        return self.geometry.payload_index(block)

    def bitmap_entry(self, chunk: int) -> int:
        """The raw sector bitmap entry of chunk *chunk* (differencing images)."""
        page, slot = self._bitmap_slot(chunk)
        return page.entries[slot]

    def set_bitmap_entry(self, chunk: int, value: int) -> int:
        """Store the sector bitmap entry of chunk *chunk* (in memory, pinned); returns its BAT index."""
        page, slot = self._bitmap_slot(chunk)
        page.entries[slot] = value
        self._pinned.add(chunk * self._chunk_ratio // self.blocks_per_page)
        return self.geometry.bitmap_index(chunk)

    def _bitmap_slot(self, chunk: int) -> tuple[BatPage, int]:
        page, local = divmod(chunk * self._chunk_ratio, self.blocks_per_page)
        return self.page(page), local + local // self._chunk_ratio + self._chunk_ratio

    def runs(self, first: int, end: int) -> Iterator[tuple[int, int, int]]:
        """Yield ``(kind, start_block, end_block)`` for maximal runs of one kind in ``[first, end)``.

        A range of many pages is streamed (:meth:`stream`) rather than read through the cache.
        """
        pending: tuple[int, int, int] | None = None
        for page in self._pages_over(first, end):
            for run in page.runs(first, end):
                if pending is not None:
                    if pending[0] == run[0] and pending[2] == run[1]:
                        pending = (run[0], pending[1], run[2])
                        continue
                    yield pending
                pending = run
        if pending is not None:
            yield pending

    def _pages_over(self, first: int, end: int) -> Iterator[BatPage]:
        if end - first > _STREAM_ABOVE_PAGES * self.blocks_per_page:
            yield from self.stream(first, end)
            return
        block = first
        while block < end:
            page = self.page(block // self.blocks_per_page)
            yield page
            block = page.first_block + self.blocks_per_page

    def host_runs(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """``(first_block, count, entry)`` for blocks ``[start, end)``: see :meth:`BatPage.host_runs`."""
        block = start
        while block < end:
            page = self.page(block // self.blocks_per_page)
            yield from page.host_runs(block, end, self.geometry.block_size)
            block = page.first_block + self.blocks_per_page

    def highest_offset(self, limit: int) -> int:
        """The highest offset below *limit* any data or bitmap entry names (0 if none); streams."""
        return max((page.highest_offset(limit) for page in self.stream()), default=0)

    def any_entry(self) -> bool:
        """Whether any entry (payload or bitmap) is not all zeros."""
        return any(page.raw.lstrip(b"\0") for page in self.stream())

    def copy_to(self, file: ImageFile, offset: int) -> int:
        """Write every entry, as committed or staged, to *file* at *offset*; returns the bytes written."""
        at = offset
        for page in self.stream():
            file.pwrite(page.raw, at)
            at += len(page.raw)
        return at - offset
