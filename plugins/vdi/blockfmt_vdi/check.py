"""Consistency check and repair of a VDI image's block map and allocated-block count.

QEMU's ``vdi_co_check`` finds entries at or above ``blocks_in_image``, data-area indexes used by two
blocks and a wrong ``blocks_allocated``; its messages are reproduced word for word (including its
habit of printing the shared index twice). Added here: entries whose block lies past end of file.
QEMU repairs nothing; ``RepairMode.ALL`` here fixes what is safe without guessing data:

- an entry whose block lies wholly past end of file (or too large and past it) is dropped:
  its data is not in the file, so the block reads as zeros before and after;
- a block cut short by end of file gets the file extended to cover it (the missing tail reads
  as zeros, as it did);
- the later of two entries sharing a data block is dropped (the first keeps the data);
- the count is rewritten from the repaired map, last, and only when the kept entries are dense
  below it: QEMU allocates at ``blocks_allocated``, so a lower count over a sparse map would let
  QEMU overwrite a live block. Entries too large but inside the file are reported, not guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from blockfmt.driver import CheckResult, RepairMode
from blockfmt.errors import CorruptImageError

from .bmap import PAGE_ENTRIES
from .constants import BMAP_UNALLOCATED, is_allocated
from .image import VdiDriver

__all__ = ["check_image"]

_EMPTY_PAGE = b"\xff" * (PAGE_ENTRIES * 4)


@dataclass
class _Scan:
    """What one pass over the map found."""

    result: CheckResult
    allocated: int = 0  # entries kept: what the count must say after repair
    counted: int = 0  # entries below blocks_in_image, as QEMU counts them
    drops: list[int] = field(default_factory=list)
    extend_to: int = 0
    max_entry: int = -1
    rewrite_count: bool = False
    complete: bool = True  # False when the map could not be read to its end: nothing is repaired then


def check_image(driver: VdiDriver, repair: RepairMode) -> CheckResult:
    """Check *driver*'s image; with ``RepairMode.ALL`` repair it and report what was fixed.

    :returns: a :class:`CheckResult` whose ``corruptions`` are the problems left after repair.
    """
    scan = _scan(driver, repair is RepairMode.ALL)
    result = scan.result
    if (
        repair is RepairMode.ALL
        and scan.complete
        and (scan.drops or scan.extend_to or result.corruptions_fixed)
    ):
        for block in scan.drops:
            driver.bmap.set_range(block, [BMAP_UNALLOCATED])
        if scan.extend_to > driver.file_end:
            driver.file.truncate(scan.extend_to)
            driver.file_end = scan.extend_to
        if scan.rewrite_count:
            driver.header = driver.header.with_blocks_allocated(scan.allocated)
            driver.file.pwrite(driver.header.pack(), 0)
        driver.file.flush()
    return result


def _scan(driver: VdiDriver, fix: bool) -> _Scan:
    header = driver.header
    bii = header.blocks_in_image
    # QEMU's vdi_co_check fills no allocation counters or end offset, so qemu-img prints none.
    result = CheckResult()
    scan = _Scan(result)
    seen = bytearray(-(-bii // 8))

    def report(message: str, fixed: bool) -> None:
        if fixed:
            result.corruptions_fixed += 1
            result.messages.append(f"Repairing {message}")
        else:
            result.corruptions += 1
            result.messages.append(f"ERROR: {message}")

    try:
        for first, page in driver.bmap.pages():
            if len(page) == PAGE_ENTRIES and page.tobytes() == _EMPTY_PAGE:
                continue
            for slot, entry in enumerate(page):
                block = first + slot
                if not is_allocated(entry):
                    continue
                start = driver.host_offset(entry)
                past_eof = start >= driver.file_end
                if entry >= bii:
                    report(f"block index {block} too large, is {entry}", fix and past_eof)
                    if fix and past_eof:
                        scan.drops.append(block)
                    continue
                scan.counted += 1
                if past_eof:
                    report(f"block index {block} lies beyond the end of the file, is {entry}", fix)
                    if fix:
                        scan.drops.append(block)
                        continue
                byte, bit = divmod(entry, 8)
                if seen[byte] & (1 << bit):
                    report(f"block index {entry} also used by {entry}", fix)
                    if fix:
                        scan.drops.append(block)
                        continue
                seen[byte] |= 1 << bit
                scan.allocated += 1
                end = start + driver.block_size
                if not past_eof and end > driver.file_end:
                    report(f"block index {block} is cut short by the end of the file, is {entry}", fix)
                    scan.extend_to = max(scan.extend_to, end)
                scan.max_entry = max(scan.max_entry, entry)
    except CorruptImageError as err:
        result.corruptions += 1
        result.messages.append(f"ERROR: {err}")
        scan.complete = False
        return scan
    # QEMU allocates new blocks at blocks_allocated: the count may only be lowered to what the map
    # holds when the kept entries are dense below it, or QEMU's next write would overwrite one.
    dense = scan.max_entry < scan.allocated
    scan.rewrite_count = (
        fix and dense and result.corruptions == 0 and scan.allocated != header.blocks_allocated
    )
    if scan.counted != header.blocks_allocated:
        fixed = fix and dense and result.corruptions == 0
        report(f"allocated blocks mismatch, is {scan.counted}, should be {header.blocks_allocated}", fixed)
    return scan
