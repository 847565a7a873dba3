"""Consistency check and repair of a VDI image's block map and allocated-block count.

QEMU's ``vdi_co_check`` finds entries at or above ``blocks_in_image``, data-area indexes used by two
blocks and a wrong ``blocks_allocated``; its messages are reproduced word for word (including its
habit of printing the shared index twice). Added here: entries whose block lies past end of file.
QEMU repairs nothing; ``RepairMode.ALL`` here fixes what is safe without guessing data:

- an entry whose block lies wholly past end of file (or too large and past it) is dropped:
  its data is not in the file, so the block reads as zeros before and after;
- a block cut short by end of file gets the file extended to cover it (the missing tail reads
  as zeros, as it did);
- of the entries sharing a data block, the first (in map order) keeps it, and each later one
  is dropped when no reader can tell: its block lies past the end of the virtual disk (neither
  tool reads it), or the shared block holds only zeros (the block reads zeros either way);
  otherwise it gets its own copy of the block (both read what they read before; dropping it
  would turn readable data into zeros). A hostile map can name one block millions of times:
  when more than :data:`MAX_SPLIT_BLOCKS` copies would be needed, or more than that many shared
  blocks would have to be read to tell, the repair is given up (reported, nothing changed), as
  the copies would make a file of as many blocks as the map has entries;
- the count is rewritten from the repaired map, last. QEMU allocates at ``blocks_allocated``, so
  a count over a sparse map would let QEMU overwrite a live block: when kept entries lie at or
  above the new count, the data area is compacted first (:meth:`VdiDriver.compact`: the highest
  blocks are copied into the unused slots below the count, flushed, then repointed), and the file
  is cut after the last block;
- an entry too large (at or above ``blocks_in_image``) whose block is in the file keeps its data:
  QEMU reads the block from there, so the compaction moves it into a free slot below the count.

Dropped entries are written a map page at a time as the scan goes, so a map of millions of bad
entries costs a few page writes, not one write per entry. A repair starts only when the whole map
is in the file (a map cut short is reported and nothing is repaired).
"""

from __future__ import annotations

import array
import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

from blockfmt.driver import CheckResult, RepairMode
from blockfmt.errors import CorruptImageError

from .bmap import PAGE_ENTRIES
from .constants import BMAP_DISCARDED, BMAP_ENTRY_SIZE, BMAP_UNALLOCATED, is_allocated
from .image import VdiDriver

__all__ = ["check_image"]

_EMPTY_PAGE = b"\xff" * (PAGE_ENTRIES * 4)
#: problems listed one per line; a hostile map can hold millions (the counts stay exact), and
#: listing them all would take gigabytes where QEMU streams them to stderr
MAX_MESSAGES = 10_000
#: blocks one repair copies to give shared data blocks their own copies (each copy is one block of
#: I/O and file space; a real image has a few duplicates, a hostile map millions), and shared
#: blocks it reads to find those that hold only zeros
MAX_SPLIT_BLOCKS = 64


@dataclass
class _Scan:
    """What one pass over the map found, and what it needs to judge an entry."""

    result: CheckResult
    bii: int = 0  # blocks_in_image: entries at or above it are too large
    eof_entry: int = 0  # the first entry whose block starts at or past end of file
    cut_entry: int = -1  # the entry whose block the end of file cuts short, if any
    cut_end: int = 0  # where that block ends: the file is extended to it
    disk_blocks: int = 0  # blocks of the virtual disk: entries of blocks past it are read by no one
    allocated: int = 0  # entries kept: what the count must say after repair
    counted: int = 0  # entries below blocks_in_image, as QEMU counts them
    dropped: int = 0  # entries a repair made unallocated (written a page at a time during the scan)
    splits: list[tuple[int, int]] = field(default_factory=list)  # (block, entry) to get own copies
    zero_slots: frozenset[int] = frozenset()  # shared slots holding only zeros: later users dropped
    extend_to: int = 0
    max_entry: int = -1
    max_block: int = -1  # the block whose entry is max_entry
    rewrite_count: bool = False
    complete: bool = True  # False when the map could not be read to its end: nothing is repaired then
    fix: bool = False  # a repair: False for a check, and for a repair given up before it started
    seen: bytearray = field(default_factory=bytearray)  # bit per data-area slot named by a kept entry
    large_seen: set[int] = field(default_factory=set)  # slots at or above bii named by a kept entry


def check_image(driver: VdiDriver, repair: RepairMode) -> CheckResult:
    """Check *driver*'s image; with ``RepairMode.ALL`` repair it and report what was fixed.

    :returns: a :class:`CheckResult` whose ``corruptions`` are the problems left after repair.
    """
    scan = _scan(driver, repair is RepairMode.ALL)
    result = scan.result
    # a repair starts only over a map wholly in the file (_scan), so its scan always completes
    if scan.fix and (scan.dropped or scan.extend_to or result.corruptions_fixed):
        driver.extend_file(scan.extend_to)
        if scan.rewrite_count:
            driver.flush()  # the drops are durable before any slot they freed is reused
            driver.compact(_moves_below(driver, scan), scan.allocated)
        driver.flush()
    return result


def _moves_below(driver: VdiDriver, scan: _Scan) -> list[tuple[int, int, int]]:
    """``(virtual block, entry, free slot)`` moving every kept entry at or above the new count below it.

    Runs after the drops are written, so the map holds only kept entries, each naming its own slot
    (too-large ones included); the free slots are those below the count that no kept entry names
    (``scan.seen``). The count is at most ``blocks_in_image``, one kept entry per virtual block.
    """
    count = scan.allocated
    splits = [(entry, block) for block, entry in scan.splits if entry < count]
    if scan.max_entry < count and not splits:
        return []
    holes = [
        slot
        for byte in range(-(-count // 8))
        if scan.seen[byte] != 0xFF
        for slot in range(byte * 8, min(count, byte * 8 + 8))
        if not scan.seen[byte] & (1 << (slot % 8))
    ]
    movers = sorted(
        [
            *(
                (entry, first + slot)
                for first, page in _used_pages(driver)
                for slot, entry in enumerate(page)
                if count <= entry and is_allocated(entry)
            ),
            *splits,
        ]
    )
    return [(block, entry, hole) for (entry, block), hole in zip(movers, holes, strict=True)]


def _used_pages(driver: VdiDriver) -> Iterator[tuple[int, array.array[int]]]:
    """The map's pages as ``(first block, entries)``, leaving out whole pages of unallocated
    entries (one comparison each: a 64 TiB image's map is mostly those).

    :raises CorruptImageError: when the map is cut short by the end of the file.
    """
    for first, page in driver.map_pages():
        if not (len(page) == PAGE_ENTRIES and page.tobytes() == _EMPTY_PAGE):
            yield first, page


def _sorted_entries(entries: array.array[int]) -> tuple[list[int], bool]:
    """*entries* sorted, and whether they are all one value: a hostile map is often pages of one
    entry (zeros), which one C-speed comparison finds without the sort."""
    if entries and entries.tobytes() == entries[:1].tobytes() * len(entries):
        return [entries[0]] * len(entries), True
    return sorted(entries), False


def _occurrences(entries: list[int], value: int) -> int:
    """How many times *value* is in the sorted list *entries* (two C-speed bisections)."""
    return bisect.bisect_right(entries, value) - bisect.bisect_left(entries, value)


def _shared_in_disk(driver: VdiDriver, scan: _Scan) -> dict[int, int] | None:
    """Slot -> how many later users inside the virtual disk name it, for every slot in the file
    that two of them name; None as soon as more than MAX_SPLIT_BLOCKS slots are shared.

    Only the map up to the end of the virtual disk is read (the users past it are dropped, never
    copied). Per page: a C-speed sort and set, then one step per distinct entry (a hostile map of
    millions of zeros is a few steps per page).
    """
    seen = bytearray(-(-scan.eof_entry // 8))
    later: dict[int, int] = {}
    for first, page in _used_pages(driver):
        if first >= scan.disk_blocks:
            break
        entries = sorted(page[: scan.disk_blocks - first])
        in_file = entries[: bisect.bisect_left(entries, scan.eof_entry)]
        for entry in set(in_file):
            byte, bit = divmod(entry, 8)
            extra = _occurrences(in_file, entry) - 1 + bool(seen[byte] & (1 << bit))
            seen[byte] |= 1 << bit
            if extra:
                later[entry] = later.get(entry, 0) + extra
                if len(later) > MAX_SPLIT_BLOCKS:
                    return None
    return later


def _plan_shared(driver: VdiDriver, scan: _Scan) -> frozenset[int] | None:
    """The shared slots inside the disk that hold only zeros (their later users are dropped), or
    None when the repair is to be given up: more than MAX_SPLIT_BLOCKS shared slots to read, or
    more than MAX_SPLIT_BLOCKS later users of slots with data to copy."""
    later = _shared_in_disk(driver, scan)
    if later is None:
        return None
    zeros = frozenset(entry for entry in later if driver.block_reads_zeros(entry))
    copies = sum(count for entry, count in later.items() if entry not in zeros)
    return None if copies > MAX_SPLIT_BLOCKS else zeros


def _scan(driver: VdiDriver, fix: bool) -> _Scan:
    header = driver.header
    bii = header.blocks_in_image
    # QEMU's vdi_co_check fills no allocation counters or end offset, so qemu-img prints none.
    result = CheckResult()
    offset_data, block_size, file_end = header.offset_data, driver.block_size, driver.file_end
    eof_entry = max(0, -(-(file_end - offset_data) // block_size))
    scan = _Scan(
        result,
        bii=bii,
        eof_entry=eof_entry,
        cut_entry=eof_entry - 1 if (file_end - offset_data) % block_size else -1,
        cut_end=offset_data + eof_entry * block_size,
        disk_blocks=-(-driver.size // block_size),
        seen=bytearray(-(-bii // 8)),
    )
    given_up = False
    # a map cut short by end of file is reported by the scan, and nothing is repaired
    if fix and header.offset_bmap + bii * BMAP_ENTRY_SIZE <= file_end:
        zero_slots = _plan_shared(driver, scan)
        given_up = zero_slots is None
        scan.fix = not given_up
        scan.zero_slots = zero_slots or frozenset()
    fix = scan.fix
    seen, large_seen, disk_blocks, zero_slots = scan.seen, scan.large_seen, scan.disk_blocks, scan.zero_slots
    zero_entry = driver.zero_entry

    unlisted = 0

    def report(fixed: bool, template: str, *args: int) -> None:
        """Count a problem; list it while fewer than MAX_MESSAGES are (formatted only then)."""
        nonlocal unlisted
        if fixed:
            result.corruptions_fixed += 1
        else:
            result.corruptions += 1
        if len(result.messages) < MAX_MESSAGES:
            result.messages.append(("Repairing " if fixed else "ERROR: ") + template.format(*args))
        else:
            unlisted += 1

    try:
        for first, page in _used_pages(driver):
            if unlisted:
                # No room left to list problems: count (and repair) the page in bulk.
                if fix:
                    fixed, repaired = _fix_page(scan, first, page, zero_entry)
                    if repaired is not None:
                        driver.store_map_entries(first, repaired)
                    result.corruptions_fixed += fixed
                    unlisted += fixed
                else:
                    bad = _count_page(scan, first, page)
                    result.corruptions += bad
                    unlisted += bad
                continue
            repaired = None
            for slot, entry in enumerate(page):
                if entry >= BMAP_DISCARDED:  # not allocated (this loop is per entry: no calls)
                    continue
                block = first + slot
                start = offset_data + entry * block_size
                past_eof = start >= file_end
                drop = -1  # what a dropped entry becomes
                used = False
                if entry >= bii:
                    # Kept when its data is in the file: the compaction moves it below the count.
                    report(fix, "block index {} too large, is {}", block, entry)
                    if not fix:
                        continue
                    if past_eof:
                        drop = BMAP_UNALLOCATED
                    else:
                        used = entry in large_seen
                        large_seen.add(entry)
                else:
                    scan.counted += 1
                    if past_eof:
                        report(fix, "block index {} lies beyond the end of the file, is {}", block, entry)
                        if fix:
                            drop = BMAP_UNALLOCATED
                    if drop < 0:
                        byte, bit = divmod(entry, 8)
                        used = bool(seen[byte] & (1 << bit))
                        seen[byte] |= 1 << bit
                if used:
                    if not fix:
                        report(False, "block index {} also used by {}", entry, entry)
                    elif block >= disk_blocks:
                        drop = BMAP_UNALLOCATED
                    elif entry in zero_slots:
                        drop = zero_entry
                    else:  # reported after the scan: the copy is made by the compaction
                        scan.splits.append((block, entry))
                    if drop >= 0:
                        report(True, "block index {} also used by {}", entry, entry)
                if drop >= 0:
                    if repaired is None:
                        repaired = array.array(page.typecode, page)
                    repaired[slot] = drop
                    scan.dropped += 1
                    continue
                scan.allocated += 1
                end = start + block_size
                if not past_eof and end > file_end:
                    report(fix, "block index {} is cut short by the end of the file, is {}", block, entry)
                    scan.extend_to = max(scan.extend_to, end)
                if entry > scan.max_entry:
                    scan.max_entry, scan.max_block = entry, block
            if repaired is not None:
                driver.store_map_entries(first, repaired)
    except CorruptImageError as err:
        result.corruptions += 1
        result.messages.append(f"ERROR: {err}")
        scan.complete = False
    for _, entry in scan.splits:  # the later user of a shared block gets its own copy
        report(True, "block index {} also used by {}", entry, entry)
    if scan.complete:
        count = header.blocks_allocated
        clean = fix and result.corruptions == 0
        scan.rewrite_count = clean and (
            scan.allocated != count or scan.max_entry >= scan.allocated or bool(scan.splits)
        )
        if scan.counted != count:
            report(clean, "allocated blocks mismatch, is {}, should be {}", scan.counted, count)
        elif scan.max_entry >= count:
            # The count is right but the map is sparse: QEMU's next allocations would reach this block.
            report(
                clean,
                "block index {} lies at or above the allocated count {}, is {}",
                scan.max_block,
                count,
                scan.max_entry,
            )
    if unlisted:
        result.messages.append(f"({unlisted} more problems of the kinds above are counted but not listed)")
    if given_up:
        result.messages.append(
            f"(not repaired: more than {MAX_SPLIT_BLOCKS} block map entries share a data block, and "
            "repair gives each its own copy; nothing was changed)"
        )
    return scan


def _fix_page(
    scan: _Scan, first: int, page: array.array[int], zero_entry: int
) -> tuple[int, array.array[int] | None]:
    """Repair one map page as the per-entry loop of a repair does, with C-speed sorts, counts and
    a dictionary lookup per entry (``map(dict.get)``) instead of Python work per entry; updates
    *scan* as it would. Used once the message list is full (a hostile map holds millions of bad
    entries). Returns how many problems were fixed here and the repaired page (None: unchanged).

    The page is taken in two segments, the blocks inside the virtual disk and those past it, so
    that each distinct entry gets one decision per segment.
    """
    fixed = 0
    repaired: array.array[int] | None = None
    inside = max(0, min(len(page), scan.disk_blocks - first))
    for lo, hi in ((0, inside), (inside, len(page))):
        if lo == hi:
            continue
        segment = page[lo:hi]
        entries, uniform = _sorted_entries(segment)
        allocated = entries[: bisect.bisect_left(entries, BMAP_DISCARDED)]
        replace: dict[int, int] = {}
        first_kept: list[int] = []  # entries whose first user here keeps the slot, later ones dropped
        for entry in allocated[:1] if uniform else sorted(set(allocated)):
            users = _occurrences(allocated, entry)
            if entry >= scan.bii:
                fixed += users  # too large
                if entry >= scan.eof_entry:
                    replace[entry] = BMAP_UNALLOCATED
                    scan.dropped += users
                    continue
                used = entry in scan.large_seen
                scan.large_seen.add(entry)
            else:
                scan.counted += users
                if entry >= scan.eof_entry:
                    fixed += users
                    replace[entry] = BMAP_UNALLOCATED
                    scan.dropped += users
                    continue
                byte, bit = divmod(entry, 8)
                used = bool(scan.seen[byte] & (1 << bit))
                scan.seen[byte] |= 1 << bit
            later = users - (not used)
            kept = users
            if later:
                if lo == inside or entry in scan.zero_slots:
                    replace[entry] = zero_entry if lo < inside else BMAP_UNALLOCATED
                    if not used:
                        first_kept.append(entry)
                    fixed += later
                    scan.dropped += later
                    kept -= later
                else:  # at most MAX_SPLIT_BLOCKS in all (_plan_shared): found one by one
                    at = segment.index(entry) + (not used)
                    for _ in range(later):
                        at = segment.index(entry, at)
                        scan.splits.append((first + lo + at, entry))
                        at += 1
            scan.allocated += kept
            if kept and entry == scan.cut_entry:
                fixed += kept
                scan.extend_to = max(scan.extend_to, scan.cut_end)
            if kept and entry > scan.max_entry:
                scan.max_entry, scan.max_block = entry, first + lo + segment.index(entry)
        if replace:
            if repaired is None:
                repaired = array.array(page.typecode, page)
            if uniform:
                new = array.array(page.typecode, [replace[entries[0]]]) * len(segment)
            else:
                new = array.array(page.typecode, list(map(replace.get, segment, segment)))
            for entry in first_kept:
                new[segment.index(entry)] = entry
            repaired[lo:hi] = new
    return fixed, repaired


def _count_page(scan: _Scan, first: int, page: array.array[int]) -> int:
    """The problems of one map page, counted as the per-entry loop of a read-only check counts them,
    with C-speed sorts and counts instead of Python work per entry (a hostile map holds millions of
    duplicates, which only need counting once the message list is full); updates *scan* as it would.
    """
    bii, eof_entry, cut_entry = scan.bii, scan.eof_entry, scan.cut_entry
    entries, uniform = _sorted_entries(page)
    small = entries[: bisect.bisect_left(entries, bii)]  # in range: counted, may be bad otherwise
    problems = bisect.bisect_left(entries, BMAP_DISCARDED) - len(small)  # too large
    problems += len(small) - bisect.bisect_left(small, eof_entry)  # past end of file
    if cut_entry >= 0:
        problems += small.count(cut_entry)  # cut short by end of file
    distinct = set(small[:1] if uniform else small)
    problems += len(small) - len(distinct)  # a later entry of this page names the same slot
    seen = scan.seen
    for entry in distinct:
        byte, bit = divmod(entry, 8)
        if seen[byte] & (1 << bit):
            problems += 1  # named by an earlier page
        seen[byte] |= 1 << bit
    scan.counted += len(small)
    scan.allocated += len(small)
    if small and small[-1] > scan.max_entry:
        scan.max_entry, scan.max_block = small[-1], first + page.index(small[-1])
    return problems
