"""Consistency check and repair of a VDI image's block map and allocated-block count.

QEMU's ``vdi_co_check`` finds entries at or above ``blocks_in_image``, data-area indexes used by two
blocks and a wrong ``blocks_allocated``; its messages are reproduced word for word (including its
habit of printing the shared index twice). Added here: entries whose block lies past end of file.
QEMU repairs nothing; ``RepairMode.ALL`` here fixes what is safe without guessing data:

- an entry whose block lies wholly past end of file (or too large and past it) is dropped:
  its data is not in the file, so the block reads as zeros before and after;
- a block cut short by end of file gets the file extended to cover it (the missing tail reads
  as zeros, as it did);
- the later of two entries sharing a data block gets its own copy of the block (both read what
  they read before; dropping it would turn readable data into zeros), when everything else is
  repairable and there are at most :data:`MAX_SPLIT_BLOCKS` of them: otherwise (a hostile map
  of millions of duplicates) they are reported and left as they are, and the count is not touched;
- the count is rewritten from the repaired map, last. QEMU allocates at ``blocks_allocated``, so
  a count over a sparse map would let QEMU overwrite a live block: when kept entries lie at or
  above the new count, the data area is compacted first (:meth:`VdiDriver.compact`: the highest
  blocks are copied into the unused slots below the count, flushed, then repointed), and the file
  is cut after the last block;
- an entry too large (at or above ``blocks_in_image``) whose block is in the file keeps its data:
  QEMU reads the block from there, so the compaction moves it into a free slot below the count.
"""

from __future__ import annotations

import array
import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

from blockfmt.driver import CheckResult, RepairMode
from blockfmt.errors import CorruptImageError

from .bmap import PAGE_ENTRIES
from .constants import BMAP_DISCARDED, is_allocated
from .image import VdiDriver

__all__ = ["check_image"]

_EMPTY_PAGE = b"\xff" * (PAGE_ENTRIES * 4)
#: problems listed one per line; a hostile map can hold millions (the counts stay exact), and
#: listing them all would take gigabytes where QEMU streams them to stderr
MAX_MESSAGES = 10_000
#: blocks one repair copies to give shared data blocks their own copies (each copy is one block of
#: I/O and file space; a real image has a few duplicates, a hostile map millions)
MAX_SPLIT_BLOCKS = 64


@dataclass
class _Scan:
    """What one pass over the map found."""

    result: CheckResult
    allocated: int = 0  # entries kept: what the count must say after repair
    counted: int = 0  # entries below blocks_in_image, as QEMU counts them
    drops: list[int] = field(default_factory=list)
    duplicates: int = 0  # entries naming a slot an earlier entry names (found by a repair)
    splits: list[tuple[int, int]] = field(default_factory=list)  # their (block, entry), to get copies
    extend_to: int = 0
    max_entry: int = -1
    max_block: int = -1  # the block whose entry is max_entry
    rewrite_count: bool = False
    complete: bool = True  # False when the map could not be read to its end: nothing is repaired then
    fix: bool = False  # a repair: False for a check, and for a repair given up before it started
    seen: bytearray = field(default_factory=bytearray)  # bit per data-area slot named by a kept entry


def check_image(driver: VdiDriver, repair: RepairMode) -> CheckResult:
    """Check *driver*'s image; with ``RepairMode.ALL`` repair it and report what was fixed.

    :returns: a :class:`CheckResult` whose ``corruptions`` are the problems left after repair.
    """
    scan = _scan(driver, repair is RepairMode.ALL)
    result = scan.result
    if scan.fix and scan.complete and (scan.drops or scan.extend_to or result.corruptions_fixed):
        driver.unmap_blocks(scan.drops)
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


def _shares_too_many(driver: VdiDriver, eof_entry: int) -> bool:
    """Whether a repair would have to copy more than MAX_SPLIT_BLOCKS blocks for entries sharing
    a slot in the file (those past end of file are dropped, not copied); stops as soon as it knows.

    Per page: a C-speed sort and set, then one step per distinct entry (a hostile map of millions
    of zeros is a few steps per page).
    """
    seen = bytearray(-(-eof_entry // 8))
    shared = 0
    for _, page in _used_pages(driver):
        entries = sorted(page)
        in_file = entries[: bisect.bisect_left(entries, eof_entry)]
        distinct = set(in_file)
        shared += len(in_file) - len(distinct)
        for entry in distinct:
            byte, bit = divmod(entry, 8)
            shared += bool(seen[byte] & (1 << bit))
            seen[byte] |= 1 << bit
        if shared > MAX_SPLIT_BLOCKS:
            return True
    return False


def _scan(driver: VdiDriver, fix: bool) -> _Scan:
    header = driver.header
    bii = header.blocks_in_image
    # QEMU's vdi_co_check fills no allocation counters or end offset, so qemu-img prints none.
    result = CheckResult()
    offset_data, block_size, file_end = header.offset_data, driver.block_size, driver.file_end
    # the first entry whose block starts at or past end of file, and the one cut short by it (if any)
    eof_entry = max(0, -(-(file_end - offset_data) // block_size))
    cut_entry = eof_entry - 1 if (file_end - offset_data) % block_size else -1
    given_up = False
    if fix:
        try:
            given_up = _shares_too_many(driver, eof_entry)
        except CorruptImageError:
            pass  # the scan below reports the map cut short, and repairs nothing
    fix = fix and not given_up
    scan = _Scan(result, fix=fix)
    seen = scan.seen = bytearray(-(-bii // 8))
    large_seen: set[int] = set()  # slots at or above blocks_in_image named by a kept (too-large) entry

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
            if not fix and unlisted:
                # No room left to list problems, and nothing to repair: count the page in bulk.
                bad = _count_page(scan, first, page, bii, eof_entry, cut_entry)
                result.corruptions += bad
                unlisted += bad
                continue
            for slot, entry in enumerate(page):
                if entry >= BMAP_DISCARDED:  # not allocated (this loop is per entry: no calls)
                    continue
                block = first + slot
                start = offset_data + entry * block_size
                past_eof = start >= file_end
                if entry >= bii:
                    # Kept when its data is in the file: the compaction moves it below the count.
                    report(fix, "block index {} too large, is {}", block, entry)
                    if not fix:
                        continue
                    if past_eof:
                        scan.drops.append(block)
                        continue
                    used = entry in large_seen
                    large_seen.add(entry)
                else:
                    scan.counted += 1
                    if past_eof:
                        report(fix, "block index {} lies beyond the end of the file, is {}", block, entry)
                        if fix:
                            scan.drops.append(block)
                            continue
                    byte, bit = divmod(entry, 8)
                    used = seen[byte] & (1 << bit)
                    seen[byte] |= 1 << bit
                if used:
                    if fix:  # reported after the scan: the copy is made only if everything is repaired
                        scan.duplicates += 1
                        if len(scan.splits) < MAX_MESSAGES:
                            scan.splits.append((block, entry))
                    else:
                        report(False, "block index {} also used by {}", entry, entry)
                scan.allocated += 1
                end = start + block_size
                if not past_eof and end > file_end:
                    report(fix, "block index {} is cut short by the end of the file, is {}", block, entry)
                    scan.extend_to = max(scan.extend_to, end)
                if entry > scan.max_entry:
                    scan.max_entry, scan.max_block = entry, block
    except CorruptImageError as err:
        result.corruptions += 1
        result.messages.append(f"ERROR: {err}")
        scan.complete = False
    if scan.duplicates:
        # The later user of a shared block gets its own copy (a too-large one is moved below the
        # count anyway, which is its copy): only in a repair that fixes everything, as the copies
        # are made by the compaction, and only up to MAX_SPLIT_BLOCKS of them.
        split = scan.complete and result.corruptions == 0 and scan.duplicates <= MAX_SPLIT_BLOCKS
        for _, entry in scan.splits:
            report(split, "block index {} also used by {}", entry, entry)
        unreported = scan.duplicates - len(scan.splits)
        result.corruptions += unreported
        unlisted += unreported
        if not split:
            scan.splits.clear()
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


def _count_page(
    scan: _Scan, first: int, page: array.array[int], bii: int, eof_entry: int, cut_entry: int
) -> int:
    """The problems of one map page, counted as the per-entry loop of a read-only check counts them,
    with C-speed sorts and counts instead of Python work per entry (a hostile map holds millions of
    duplicates, which only need counting once the message list is full); updates *scan* as it would.
    """
    entries = sorted(page)
    small = entries[: bisect.bisect_left(entries, bii)]  # in range: counted, may be bad otherwise
    problems = bisect.bisect_left(entries, BMAP_DISCARDED) - len(small)  # too large
    problems += len(small) - bisect.bisect_left(small, eof_entry)  # past end of file
    if cut_entry >= 0:
        problems += small.count(cut_entry)  # cut short by end of file
    distinct = set(small)
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
