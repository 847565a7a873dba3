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
The BAT is streamed page by page and data blocks checked a run at a time (blocks stored one after
the other); overlaps are found with one byte per MiB of the file (payload blocks are MiB-aligned),
so memory grows neither with the disk nor with how fragmented or hostile its BAT is; at most
:data:`MAX_MESSAGES` problems are listed (counts stay exact) and repairs are committed in batches of
at most :data:`FIX_BATCH` entries.
Cluster counts and the image end offset stay unset, as QEMU's VHDX check leaves them, so
``qemu-img check`` output is reproduced line for line.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from blockfmt.driver import CheckResult, RepairMode
from blockfmt.errors import CorruptImageError

from .bat import KIND_DATA, KIND_PARENT, KIND_PARTIAL, KIND_ZERO, BatPage, make_entry
from .constants import BAT_OFFSET_MASK, BAT_STATE_MASK, OBJECT_ALIGNMENT, BatState
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
    claims = _SlotClaims()
    for run in _BatScan(driver, result, repair is RepairMode.ALL).scan():
        claims.claim(run, driver.block_size)
    if driver.differencing is not None:
        bitmap_problems = driver.differencing.bitmaps.check()
        for message in bitmap_problems:
            _note(result, message)
        result.corruptions += len(bitmap_problems)
    _report_overlaps(driver, result, claims)
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

    def scan(self) -> Iterator[_Run]:
        """Check every payload block, yielding the usable data runs in block order, one per stretch
        of blocks stored one after the other."""
        for page in self.driver.bat.stream():
            yield from self._scan_page(page)
        self._commit()

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
                last = block + count - 1
                yield offset, offset + (count - 1) * bs + driver.geometry.block_length(last), block

    def _blocks_one_by_one(self, first: int, count: int) -> list[_Run]:
        """A run with a bad block: judge each block, keep the good ones."""
        good: list[_Run] = []
        for block in range(first, first + count):
            try:
                offset = self.driver.data_offset(block)
            except CorruptImageError as err:
                self._unusable(block, err)
                continue
            good.append((offset, offset + self.driver.geometry.block_length(block), block))
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


class _SlotClaims:
    """Which MiB of the file the data runs seen so far occupy: one byte per MiB, set by its first
    claimant, so finding overlaps costs memory for the file's size only. A later block claiming a
    taken MiB overlaps an earlier one (in BAT order); up to :data:`MAX_MESSAGES` of them are kept
    to be named, all of them counted."""

    def __init__(self) -> None:
        self.taken = bytearray()
        #: (block, its offset, the first taken MiB it claims) of the overlapping blocks listed
        self.overlaps: list[tuple[int, int, int]] = []
        self.count = 0

    def claim(self, run: _Run, block_size: int) -> None:
        offset, end, first = run
        lo, hi = offset // OBJECT_ALIGNMENT, -(-end // OBJECT_ALIGNMENT)
        if hi > len(self.taken):
            self.taken.extend(bytes(hi - len(self.taken)))
        per_block = block_size // OBJECT_ALIGNMENT
        slot = self.taken.find(1, lo, hi)
        while slot >= 0:  # one overlap per block with a taken MiB, then on to the next block
            nth = (slot - lo) // per_block
            self.count += 1
            if len(self.overlaps) < MAX_MESSAGES:
                self.overlaps.append((first + nth, offset + nth * block_size, slot))
            slot = self.taken.find(1, lo + (nth + 1) * per_block, hi)
        for at in range(lo, hi, _CLAIM_STEP):
            stop = min(hi, at + _CLAIM_STEP)
            self.taken[at:stop] = _TAKEN[: stop - at]


#: MiB marked per slice assignment (a single run can span the whole disk)
_CLAIM_STEP = 1 << 16
_TAKEN = b"\x01" * _CLAIM_STEP


def _report_overlaps(driver: VhdxDriver, result: CheckResult, claims: _SlotClaims) -> None:
    """Each block that claims space an earlier block (in BAT order) holds is one corruption (not
    repaired); the listed ones are named with the earlier block, found in a second pass."""
    result.corruptions += claims.count
    if not claims.overlaps:
        return
    wanted = sorted({slot for _block, _offset, slot in claims.overlaps})
    owners: dict[int, tuple[int, int]] = {}  # taken MiB -> (its first claimant, that block's offset)
    bs = driver.block_size
    for offset, end, first in _BatScan(driver, CheckResult(), repair=False).scan():
        lo, hi = offset // OBJECT_ALIGNMENT, -(-end // OBJECT_ALIGNMENT)
        for slot in wanted[bisect_left(wanted, lo) : bisect_left(wanted, hi)]:
            if slot not in owners:
                nth = (slot * OBJECT_ALIGNMENT - offset) // bs
                owners[slot] = (first + nth, offset + nth * bs)
    payload_index = driver.geometry.payload_index
    for block, offset, slot in claims.overlaps:
        other, other_offset = owners[slot]
        _note(
            result,
            f"VHDX BAT entry {payload_index(block)} offset {offset} overlaps with "
            f"BAT entry {payload_index(other)} (offset {other_offset})",
        )
