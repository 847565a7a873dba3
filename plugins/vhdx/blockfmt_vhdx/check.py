"""Consistency check and repair of an open VHDX image (QEMU's ``vhdx_co_check``, extended).

Found: BAT entries with invalid states, FULLY_PRESENT blocks beyond the end of the file (QEMU's
messages) or inside the header section, log, BAT or metadata region, and payload blocks that
overlap each other. ``-r all`` fixes what is safe: invalid and unusable entries become ZERO
(they could not be read anyway); overlapping blocks are only reported, since which of the two
owns the space cannot be known. A log replayed on open counts as one corruption fixed, as in QEMU.
Added here, one corruption each, both fixed by ``-r all``: a damaged copy of the region table
(rewritten from the valid copy: QEMU reads only the first one), and a LogGuid left set over a log
without a valid active sequence (cleared: QEMU, which ignores Tail, would otherwise replay what
the spec calls invalid, or refuse a read-only open).
Cluster counts and the image end offset stay unset, as QEMU's VHDX check leaves them, so
``qemu-img check`` output is reproduced line for line.
"""

from __future__ import annotations

import itertools

from blockfmt.driver import CheckResult, RepairMode
from blockfmt.errors import CorruptImageError

from .bat import KIND_DATA, KIND_PARENT, KIND_PARTIAL, KIND_ZERO, make_entry
from .constants import BatState
from .image import VhdxDriver

__all__ = ["check_image"]


def check_image(driver: VhdxDriver, repair: RepairMode) -> CheckResult:
    """Check every payload entry of *driver*'s BAT; repair with ``RepairMode.ALL``."""
    result = CheckResult()
    if driver.log_replayed_on_open:
        result.corruptions_fixed += 1
    for offset in driver.regions.damaged_tables:
        result.messages.append(f"VHDX region table at offset {offset} is corrupt; its other copy is used")
    if repair is RepairMode.ALL:
        result.corruptions_fixed += driver.restore_region_tables()
    else:
        result.corruptions += len(driver.regions.damaged_tables)
    if driver.log_guid_without_entries and repair is RepairMode.ALL:
        # Not a corruption (a crash before the first entry was complete leaves it), but QEMU, which
        # ignores Tail, may still see an entry to replay: -r all leaves the log marked empty.
        result.messages.append("Repairing VHDX header has a LogGuid, but the log holds no valid entries")
        driver.clear_log_guid()
        result.corruptions_fixed += 1
    geometry, bat, block_size = driver.geometry, driver.bat, driver.block_size
    driver.refresh_file_size()
    fixes: dict[int, int] = {}
    placed: list[tuple[int, int]] = []
    for kind, start, stop in bat.runs(0, geometry.payload_blocks):
        if kind in (KIND_ZERO, KIND_PARENT):
            continue
        for block in range(start, stop):
            try:
                if kind not in (KIND_DATA, KIND_PARTIAL):
                    raise driver.invalid_state_error(block)
                offset = driver.data_offset(block)
            except CorruptImageError as err:
                result.messages.append(err.message)
                fixes[block] = make_entry(BatState.ZERO)
                continue
            placed.append((offset, block))
    if driver.differencing is not None:
        bitmap_problems = driver.differencing.bitmaps.check()
        result.messages.extend(bitmap_problems)
        result.corruptions += len(bitmap_problems)
    placed.sort()
    for (prev_offset, prev_block), (offset, block) in itertools.pairwise(placed):
        if prev_offset + block_size > offset:
            result.messages.append(
                f"VHDX BAT entry {geometry.payload_index(block)} offset {offset} overlaps with "
                f"BAT entry {geometry.payload_index(prev_block)} (offset {prev_offset})"
            )
            result.corruptions += 1
    if fixes and repair is RepairMode.ALL:
        driver.begin_change()
        driver.commit_entries(fixes)
        result.corruptions_fixed += len(fixes)
    else:
        result.corruptions += len(fixes)
    return result
