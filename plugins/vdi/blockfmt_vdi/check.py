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
- the count is rewritten from the repaired map, last, so the map never names uncounted blocks.
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
    allocated: int = 0
    drops: list[int] = field(default_factory=list)
    extend_to: int = 0
    highest_end: int = 0


def check_image(driver: VdiDriver, repair: RepairMode) -> CheckResult:
    """Check *driver*'s image; with ``RepairMode.ALL`` repair it and report what was fixed.

    :returns: a :class:`CheckResult` whose ``corruptions`` are the problems left after repair.
    """
    scan = _scan(driver, repair is RepairMode.ALL)
    result = scan.result
    if repair is RepairMode.ALL and (scan.drops or scan.extend_to or result.corruptions):
        for block in scan.drops:
            driver.bmap.set_range(block, [BMAP_UNALLOCATED])
        if scan.extend_to > driver.file_end:
            driver.file.truncate(scan.extend_to)
            driver.file_end = scan.extend_to
        if scan.allocated != driver.header.blocks_allocated:
            driver.header = driver.header.with_blocks_allocated(scan.allocated)
            driver.file.pwrite(driver.header.pack(), 0)
        driver.file.flush()
    return result


def _scan(driver: VdiDriver, fix: bool) -> _Scan:
    header = driver.header
    bii = header.blocks_in_image
    result = CheckResult(total_clusters=bii)
    scan = _Scan(result, highest_end=header.offset_data)
    seen = bytearray(-(-bii // 8))
    previous: int | None = None

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
                previous = None
                continue
            for slot, entry in enumerate(page):
                block = first + slot
                if not is_allocated(entry):
                    previous = None
                    continue
                start = driver.host_offset(entry)
                past_eof = start >= driver.file_end
                if entry >= bii:
                    report(f"block index {block} too large, is {entry}", fix and past_eof)
                    if fix and past_eof:
                        scan.drops.append(block)
                    previous = None
                    continue
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
                if previous is not None and entry != previous + 1:
                    result.fragmented_clusters = (result.fragmented_clusters or 0) + 1
                previous = entry
                scan.highest_end = max(scan.highest_end, end)
    except CorruptImageError as err:
        result.corruptions += 1
        result.messages.append(f"ERROR: {err}")
        return scan
    # Without repair this counts what QEMU counts: every entry below blocks_in_image.
    if scan.allocated != header.blocks_allocated:
        report(f"allocated blocks mismatch, is {scan.allocated}, should be {header.blocks_allocated}", fix)
    result.allocated_clusters = scan.allocated
    result.fragmented_clusters = result.fragmented_clusters or 0
    result.image_end_offset = scan.highest_end
    return scan
