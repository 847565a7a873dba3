"""Growing and shrinking a VDI image in place (QEMU 7.2's vdi driver cannot resize at all).

The header sector is the commit point: every step before it writes only bytes that the current
header leaves unreferenced (map entries past ``blocks_in_image``, blocks past ``blocks_allocated``),
flushed, so a crash at any point leaves either the old image or the new one.

Growing needs one map entry per new block. When the map has no room left before the data area,
the blocks stored first in the data area are copied to its end and the grown map is written into
the space they leave; the header then names the new map and a data area starting that many blocks
later, with every entry lowered by as many blocks. The old map area is given back to the file
system. A shrink discards the blocks past the new end (the data area stays dense, as VirtualBox
keeps it) and zeroes the rest of the new last block, so a later grow reads zeros there.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from blockfmt.errors import CorruptImageError, InvalidOptionError, UnsupportedOperationError

from .bmap import BlockMap, entries_to_bytes
from .constants import BMAP_ENTRY_SIZE, BMAP_UNALLOCATED, DISK_SIZE_MAX, SECTOR_SIZE, is_allocated
from .structs import Header, round_up, unsupported_size_message

if TYPE_CHECKING:
    from .image import VdiDriver

__all__ = ["resize"]

#: ``offset_bmap`` and ``offset_data`` are uint32 fields
OFFSET_LIMIT = 1 << 32


def resize(driver: VdiDriver, size: int) -> None:
    """Make the virtual disk of *driver* *size* bytes (rounded up to sectors, as QEMU reads sizes).

    :raises InvalidOptionError: for a size beyond what VDI can describe.
    :raises CorruptImageError: when the data area is not laid out densely enough to shrink safely.
    """
    if size > DISK_SIZE_MAX:
        raise InvalidOptionError(unsupported_size_message(size))
    size = round_up(size, SECTOR_SIZE)
    old_size = driver.size
    if size == old_size:
        return
    bs = driver.block_size
    blocks = -(-size // bs)
    if size < old_size:
        _drop_tail(driver, size, blocks)
        header = driver.header
        count = header.blocks_allocated
        if header.is_static:
            count = blocks
        _commit(
            driver,
            dataclasses.replace(header, disk_size=size, blocks_in_image=blocks, blocks_allocated=count),
        )
        if header.is_static and driver.file_end > driver.host_offset(blocks):
            driver.file.truncate(driver.host_offset(blocks))
        return
    last_end = min(round_up(old_size, bs), driver.header.blocks_in_image * bs)
    if last_end > old_size:
        driver.write_zeroes(old_size, last_end - old_size)  # bytes past the old end become visible
    header = driver.header
    if round_up(blocks * BMAP_ENTRY_SIZE, SECTOR_SIZE) <= header.offset_data - header.offset_bmap:
        _grow_in_place(driver, size, blocks)
    else:
        _grow_with_new_map(driver, size, blocks)


def _drop_tail(driver: VdiDriver, size: int, blocks: int) -> None:
    """Discard the blocks past the new end and zero the bytes past *size* in the new last block."""
    bs = driver.block_size
    old_size = driver.size
    tail_end = min(blocks * bs, old_size)
    if tail_end > size:
        driver.write_zeroes(size, tail_end - size)
    if blocks * bs < old_size:
        driver.discard(blocks * bs, old_size - blocks * bs)
    header = driver.header
    kept = [run for run in driver.bmap.runs(0, blocks) if run.entry is not None]
    if header.is_static:
        fits = all(run.entry + run.count <= blocks for run in kept)  # type: ignore[operator]
    else:
        fits = header.blocks_allocated <= blocks and all(
            run.entry + run.count <= header.blocks_allocated  # type: ignore[operator]
            for run in kept
        )
    if not fits:
        raise CorruptImageError(
            "VDI blocks that stay inside the new size are stored past it; "
            "run 'check -r all' before shrinking this image"
        )


def _new_static_entries(driver: VdiDriver, first_entry: int, count: int) -> list[int]:
    """Entries for *count* new blocks of a static image, stored from *first_entry* on (file extended)."""
    if not driver.header.is_static or not count:
        return [BMAP_UNALLOCATED] * count
    end = driver.host_offset(first_entry + count)
    if end > driver.file_end:
        driver.file.truncate(end)
        driver.file_end = end
    return list(range(first_entry, first_entry + count))


def _grow_in_place(driver: VdiDriver, size: int, blocks: int) -> None:
    """The map has room: write the new entries past the old ones, then the header."""
    header = driver.header
    old_blocks = header.blocks_in_image
    added = max(0, blocks - old_blocks)
    entries = _new_static_entries(driver, header.blocks_allocated, added)
    if entries:
        driver.file.pwrite(_pack(entries), header.offset_bmap + old_blocks * BMAP_ENTRY_SIZE)
    driver.file.flush()
    count = header.blocks_allocated + (added if header.is_static else 0)
    _commit(
        driver,
        dataclasses.replace(
            header, disk_size=size, blocks_in_image=max(blocks, old_blocks), blocks_allocated=count
        ),
    )


def _grow_with_new_map(driver: VdiDriver, size: int, blocks: int) -> None:
    """Free the first blocks of the data area, write the grown map there, then switch the header."""
    header = driver.header
    bs = driver.block_size
    map_bytes = round_up(blocks * BMAP_ENTRY_SIZE, SECTOR_SIZE)
    shift = -(-map_bytes // bs)
    new_bmap, new_data = header.offset_data, header.offset_data + shift * bs
    if new_data >= OFFSET_LIMIT:
        raise UnsupportedOperationError(
            "VDI block map cannot grow that far: the data area would start beyond 4 GiB"
        )
    count = driver.next_free_entry()
    owners = driver.bmap.owners(list(range(shift)))
    moved: dict[int, int] = {}
    for entry in sorted(owners):
        block = driver.file.pread_exact(bs, driver.host_offset(entry), "VDI block")
        target = count + len(moved)
        end = driver.host_offset(target + 1)
        if end > driver.file_end:
            driver.file.truncate(end)
            driver.file_end = end
        driver.file.pwrite(block, driver.host_offset(target))
        moved[entry] = target
    driver.file.flush()
    count += len(moved)
    if moved:
        driver.write_allocated_count(count)  # the count before the map: QEMU allocates at blocks_allocated
        for entry, target in moved.items():
            for virtual in owners[entry]:
                driver.bmap.set_range(virtual, [target])
        driver.file.flush()
    header = driver.header
    new_map = [_shifted(driver.bmap.get(i), shift) for i in range(header.blocks_in_image)]
    added = blocks - header.blocks_in_image
    new_map += [_shifted(entry, shift) for entry in _new_static_entries(driver, count, added)]
    count += added if header.is_static else 0
    driver.file.pwrite(_pack(new_map), new_bmap)
    driver.file.flush()
    _commit(
        driver,
        dataclasses.replace(
            header,
            disk_size=size,
            blocks_in_image=blocks,
            blocks_allocated=count - shift,
            offset_bmap=new_bmap,
            offset_data=new_data,
        ),
    )
    driver.file.punch_hole(header.offset_bmap, header.offset_data - header.offset_bmap)


def _shifted(entry: int, shift: int) -> int:
    if not is_allocated(entry):
        return entry
    if entry < shift:
        raise CorruptImageError(f"VDI block map entry {entry} still names a moved block")
    return entry - shift


def _pack(entries: list[int]) -> bytes:
    import array

    return entries_to_bytes(array.array("I", entries))


def _commit(driver: VdiDriver, header: Header) -> None:
    """Write the header sector (the commit point), flush, and take the new layout into use."""
    driver.file.pwrite(header.pack(), 0)
    driver.file.flush()
    driver.header = header
    driver.size = header.virtual_size
    driver.bmap = BlockMap(driver.file, header.offset_bmap, header.blocks_in_image)
    driver.file_end = driver.file.size()
