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
The BAT is streamed page by page, data blocks checked a run at a time (blocks stored one after the
other), so memory does not grow with the disk; at most :data:`MAX_MESSAGES` problems are listed
(counts stay exact) and repairs are committed in batches of at most :data:`FIX_BATCH` entries.
Cluster counts and the image end offset stay unset, as QEMU's VHDX check leaves them, so
``qemu-img check`` output is reproduced line for line.
"""

from __future__ import annotations

from collections.abc import Iterator

from blockfmt.driver import CheckResult, RepairMode
from blockfmt.errors import CorruptImageError

from .bat import KIND_DATA, KIND_PARENT, KIND_PARTIAL, KIND_ZERO, BatPage, make_entry
from .constants import BAT_OFFSET_MASK, BAT_STATE_MASK, BatState
from .image import VhdxDriver

__all__ = ["FIX_BATCH", "MAX_MESSAGES", "check_image"]

#: problems listed at most (a hostile BAT can name millions); the counts stay exact
MAX_MESSAGES = 10_000
#: repaired entries committed per log transaction
FIX_BATCH = 65_536

#: a data run: (file offset, file end, first block)
_Run = tuple[int, int, int]


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
    driver.refresh_file_size()
    placed = _BatScan(driver, result, repair is RepairMode.ALL).scan()
    if driver.differencing is not None:
        bitmap_problems = driver.differencing.bitmaps.check()
        for message in bitmap_problems:
            _note(result, message)
        result.corruptions += len(bitmap_problems)
    _report_overlaps(driver, result, placed)
    return result


def _note(result: CheckResult, message: str) -> None:
    if len(result.messages) < MAX_MESSAGES:
        result.messages.append(message)


class _BatScan:
    """One pass over the BAT: unusable entries reported (and made ZERO), data runs collected."""

    def __init__(self, driver: VhdxDriver, result: CheckResult, repair: bool) -> None:
        self.driver = driver
        self.result = result
        self.repair = repair
        self.fixes: dict[int, int] = {}

    def scan(self) -> list[_Run]:
        """Check every payload block; returns the data runs, one per stretch of consecutive blocks."""
        driver = self.driver
        placed: list[_Run] = []
        for page in driver.bat.stream():
            placed.extend(self._scan_page(page))
        self._commit()
        return placed

    def _scan_page(self, page: BatPage) -> Iterator[_Run]:
        driver, bs = self.driver, self.driver.block_size
        for kind, start, stop in page.runs(page.first_block, page.end_block):
            if kind in (KIND_ZERO, KIND_PARENT):
                continue
            if kind not in (KIND_DATA, KIND_PARTIAL):
                for block in range(start, stop):
                    state = page.entries[page.slot(block)] & BAT_STATE_MASK
                    self._unusable(block, driver.invalid_state_error(block, state))
                continue
            for block, count, entry in page.host_runs(start, stop, bs):
                offset = entry & BAT_OFFSET_MASK
                try:
                    driver.check_data_run(block, count, offset)
                except CorruptImageError:
                    yield from self._blocks_one_by_one(block, count)
                    continue
                yield offset, offset + count * bs, block

    def _blocks_one_by_one(self, first: int, count: int) -> list[_Run]:
        """A run with a bad block: judge each block, keep the good ones."""
        good: list[_Run] = []
        for block in range(first, first + count):
            try:
                offset = self.driver.data_offset(block)
            except CorruptImageError as err:
                self._unusable(block, err)
                continue
            good.append((offset, offset + self.driver.block_size, block))
        return good

    def _unusable(self, block: int, err: CorruptImageError) -> None:
        _note(self.result, err.message)
        if not self.repair:
            self.result.corruptions += 1
            return
        self.fixes[block] = make_entry(BatState.ZERO)
        if len(self.fixes) >= FIX_BATCH:
            self._commit()

    def _commit(self) -> None:
        if self.fixes:
            self.driver.begin_change()
            self.driver.commit_entries(self.fixes)
            self.result.corruptions_fixed += len(self.fixes)
            self.fixes = {}


def _report_overlaps(driver: VhdxDriver, result: CheckResult, placed: list[_Run]) -> None:
    """Each block that starts inside an earlier-placed block is one corruption (not repaired)."""
    bs, payload_index = driver.block_size, driver.geometry.payload_index
    placed.sort(key=lambda run: (run[0], run[2]))
    reach: _Run | None = None  # the run reaching furthest into the file so far
    for run in placed:
        start, end, first = run
        if reach is not None and start < reach[1]:
            for offset in range(start, min(end, reach[1]), bs):
                other = reach[2] + (offset - reach[0]) // bs
                block = first + (offset - start) // bs
                _note(
                    result,
                    f"VHDX BAT entry {payload_index(block)} offset {offset} overlaps with "
                    f"BAT entry {payload_index(other)} (offset {reach[0] + (other - reach[2]) * bs})",
                )
                result.corruptions += 1
        if reach is None or end > reach[1]:
            reach = run
