"""Growing and shrinking a VHDX image in place (QEMU 7.2's vhdx driver cannot resize).

One log transaction commits each resize (MS-VHDX §2.3): the Virtual Disk Size metadata item, and,
when the BAT outgrows its region, the BAT region entry in both region tables. Everything written
before that transaction is unreferenced until it commits, and written and flushed directly:

* growing inside the BAT region: the new BAT entries past the old ones (zeros, NOT_PRESENT);
* growing past the BAT region: a new, larger BAT region after the last data block, holding the old
  entries and the new ones; after the commit the old region is given back to the file system;
* fixed images: the payload blocks of the new part, appended (sparse) and named by their entries.

A shrink commits the new size together with NOT_PRESENT for every entry past the new end; after the
commit the freed payload blocks are punched out and the bytes past the new end in the new last block
are zeroed, so a later grow reads zeros there. The log is replayed by any VHDX reader (QEMU, Hyper-V)
that finds it after a crash, so the image is always either the old one or the new one.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from blockfmt.errors import InvalidOptionError

from .bat import KIND_DATA, BatGeometry, make_entry
from .constants import (
    BAT_ENTRY_SIZE,
    BAT_REGION_GUID,
    LOG_SECTOR_SIZE,
    MAX_DISK_SIZE,
    METADATA_TABLE_SIZE,
    OBJECT_ALIGNMENT,
    REGION_TABLE_OFFSETS,
    VIRTUAL_DISK_SIZE_GUID,
    BatState,
)
from .structs import MetadataTable, RegionTable, RegionTableEntry

if TYPE_CHECKING:
    from .image import VhdxDriver

__all__ = ["resize"]

_U64 = struct.Struct("<Q")

Update = tuple[int, bytes]


def resize(driver: VhdxDriver, size: int) -> None:
    """Make the virtual disk of *driver* *size* bytes.

    :raises InvalidOptionError: for a size that is not a whole number of logical sectors or is
        beyond the VHDX limit of 64 TiB.
    """
    logical = driver.params.logical_sector_size
    if size % logical:
        raise InvalidOptionError(f"VHDX disk size must be a multiple of the logical sector size ({logical})")
    if size > MAX_DISK_SIZE:
        raise InvalidOptionError(f"VHDX disk size {size} is beyond the maximum of {MAX_DISK_SIZE} bytes")
    if size == 0:  # QEMU computes (0 - 1) >> bits BAT entries for an empty disk and refuses it
        raise InvalidOptionError("VHDX disk size must be positive")
    if size == driver.size:
        return
    driver.begin_change()
    driver.commit_entries()
    if size < driver.size:
        _shrink(driver, size)
    else:
        _grow(driver, size)
    driver.reload_layout()


def _size_update(driver: VhdxDriver, size: int) -> Update:
    """Where the Virtual Disk Size item lives, with its new value."""
    region = driver.regions.metadata.file_offset
    table = MetadataTable.parse(driver.file.pread(METADATA_TABLE_SIZE, region))
    entry = next(e for e in table.entries if e.item_id == VIRTUAL_DISK_SIZE_GUID)
    return region + entry.offset, _U64.pack(size)


def _shrink(driver: VhdxDriver, size: int) -> None:
    old = driver.geometry
    new = old.replace(disk_size=size)  # every other field kept (HasParent: the bitmap entries)
    freed = [
        (offset, count * old.block_size)
        for kind, start, stop in driver.bat.runs(new.payload_blocks, old.payload_blocks)
        if kind == KIND_DATA
        for _block, count, offset in driver.data_runs(start, stop)
    ]
    dropped = old.entry_count - new.entry_count
    bat_tail = (
        driver.regions.bat.file_offset + new.entry_count * BAT_ENTRY_SIZE,
        bytes(dropped * BAT_ENTRY_SIZE),
    )
    last_block_end = min(new.payload_blocks * old.block_size, old.disk_size)
    driver.log_writer().write_transaction([_size_update(driver, size), bat_tail])
    driver.zero_in_place(size, last_block_end - size)  # now past the end, read back only after a grow
    for offset, length in freed:
        driver.file.punch_hole(offset, length)
    driver.file.flush()


def _grow(driver: VhdxDriver, size: int) -> None:
    old = driver.geometry
    bs = old.block_size
    last_block_end = min(old.payload_blocks * bs, size)
    if last_block_end > old.disk_size:
        driver.zero_in_place(old.disk_size, last_block_end - old.disk_size)  # invisible until the commit
    new = old.replace(disk_size=size)
    region = driver.regions.bat
    new_length = new.entry_count * BAT_ENTRY_SIZE
    updates = [_size_update(driver, size)]
    if new_length <= region.length:
        tail = _new_entries(driver, old, new, driver.allocation_end())
        driver.file.pwrite(tail, region.file_offset + old.entry_count * BAT_ENTRY_SIZE)
    else:
        table_offset = driver.allocation_end()
        table_length = -(-new_length // OBJECT_ALIGNMENT) * OBJECT_ALIGNMENT
        tail = _new_entries(driver, old, new, table_offset + table_length)
        if driver.file_size < table_offset + table_length:
            driver.file.truncate(table_offset + table_length)
        copied = driver.bat.copy_to(driver.file, table_offset)
        driver.file.pwrite(tail, table_offset + copied)
        updates += _region_table_updates(
            driver, RegionTableEntry(BAT_REGION_GUID, table_offset, table_length, True)
        )
    driver.file.flush()
    driver.log_writer().write_transaction(updates)
    if new_length > region.length:
        driver.file.punch_hole(region.file_offset, region.length)
        driver.file.flush()


def _new_entries(driver: VhdxDriver, old: BatGeometry, new: BatGeometry, payload_at: int) -> bytes:
    """The BAT bytes past the old entries: NOT_PRESENT, or for a fixed image, new blocks from *payload_at*.

    The blocks of a fixed image are made by extending the file (a hole reads as zeros).
    """
    raw = bytearray((new.entry_count - old.entry_count) * BAT_ENTRY_SIZE)
    if not driver.params.leave_blocks_allocated:
        return bytes(raw)
    first = old.payload_blocks
    view = memoryview(raw).cast("Q")
    for block in range(first, new.payload_blocks):
        index = new.payload_index(block) - old.entry_count
        view[index] = make_entry(BatState.FULLY_PRESENT, payload_at + (block - first) * new.block_size)
    view.release()
    end = payload_at + (new.payload_blocks - first) * new.block_size
    if end > driver.file.size():
        driver.file.truncate(end)
    return bytes(raw)


def _region_table_updates(driver: VhdxDriver, bat: RegionTableEntry) -> list[Update]:
    """The 4 KiB sectors of both region tables that change when the BAT region moves."""
    updates: list[Update] = []
    for offset in REGION_TABLE_OFFSETS:
        current = driver.file.pread(RegionTable.SIZE, offset)
        entries = RegionTable.parse(_readable_table(driver, current)).entries
        table = RegionTable(tuple(bat if e.guid == BAT_REGION_GUID else e for e in entries)).pack()
        for pos in range(0, RegionTable.SIZE, LOG_SECTOR_SIZE):
            if table[pos : pos + LOG_SECTOR_SIZE] != current[pos : pos + LOG_SECTOR_SIZE]:
                updates.append((offset + pos, table[pos : pos + LOG_SECTOR_SIZE]))
    return updates


def _readable_table(driver: VhdxDriver, current: bytes) -> bytes:
    """*current* if its checksum holds, else the copy the driver opened with (both copies get fixed)."""
    from blockfmt.errors import CorruptImageError

    try:
        RegionTable.parse(current)
    except CorruptImageError:
        for offset in REGION_TABLE_OFFSETS:
            other = driver.file.pread(RegionTable.SIZE, offset)
            try:
                RegionTable.parse(other)
            except CorruptImageError:
                continue
            return other
        raise
    return current
