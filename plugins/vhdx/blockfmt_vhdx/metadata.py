"""The metadata region: table, known items, required/unknown rules (MS-VHDX §2.6).

Every offset and length in the table is checked against the region before an item is read, and
items are at most 1 MiB (§2.6.1.2), so no read or allocation is sized by an unchecked field.
"""

from __future__ import annotations

import struct
import uuid

from blockfmt.errors import CorruptImageError, OutOfRangeError, UnsupportedFeatureError
from blockfmt.fileio import ImageFile
from blockfmt.records import FrozenRecord

from .bat import BatGeometry
from .constants import (
    BLOCK_SIZE_MAX,
    BLOCK_SIZE_MIN,
    FILE_PARAMETERS_GUID,
    LOGICAL_SECTOR_SIZE_GUID,
    MAX_DISK_SIZE,
    METADATA_ITEM_MAX_LENGTH,
    METADATA_TABLE_SIZE,
    PAGE83_DATA_GUID,
    PARENT_LOCATOR_GUID,
    PHYSICAL_SECTOR_SIZE_GUID,
    SECTOR_SIZES,
    VIRTUAL_DISK_SIZE_GUID,
)
from .structs import FileParameters, MetadataTable, MetadataTableEntry, ParentLocator

__all__ = ["DiskParameters", "build_metadata", "parse_metadata", "read_metadata"]

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_GUID_SIZE = 16

#: items every VHDX has (§2.6.2); the parent locator is required only with HasParent
_REQUIRED_ITEMS = {
    FILE_PARAMETERS_GUID: "file parameters",
    VIRTUAL_DISK_SIZE_GUID: "virtual disk size",
    PAGE83_DATA_GUID: "page 83 data",
    LOGICAL_SECTOR_SIZE_GUID: "logical sector size",
    PHYSICAL_SECTOR_SIZE_GUID: "physical sector size",
}
_KNOWN_ITEMS = {**_REQUIRED_ITEMS, PARENT_LOCATOR_GUID: "parent locator"}


class DiskParameters(FrozenRecord):
    """What the metadata says about the virtual disk (§2.6.2)."""

    _fields = (
        "block_size",
        "disk_size",
        "logical_sector_size",
        "physical_sector_size",
        "page83",
        "leave_blocks_allocated",
        "parent_locator",
    )
    __slots__ = _fields
    block_size: int
    disk_size: int
    logical_sector_size: int
    physical_sector_size: int
    page83: uuid.UUID
    leave_blocks_allocated: bool
    #: the parent locator of a differencing image (HasParent set); None otherwise
    parent_locator: ParentLocator | None

    def __init__(
        self,
        block_size: int,
        disk_size: int,
        logical_sector_size: int,
        physical_sector_size: int,
        page83: uuid.UUID,
        leave_blocks_allocated: bool = False,
        parent_locator: ParentLocator | None = None,
    ) -> None:
        self._fill(
            block_size,
            disk_size,
            logical_sector_size,
            physical_sector_size,
            page83,
            leave_blocks_allocated,
            parent_locator,
        )

    @property
    def has_parent(self) -> bool:
        return self.parent_locator is not None

    @property
    def geometry(self) -> BatGeometry:
        return BatGeometry(self.disk_size, self.block_size, self.logical_sector_size, self.has_parent)


def read_metadata(file: ImageFile, region_offset: int, region_length: int) -> DiskParameters:
    """Read the metadata region at *region_offset* (already checked to lie inside the file)."""
    table = MetadataTable.parse(file.pread(METADATA_TABLE_SIZE, region_offset))
    items: dict[uuid.UUID, bytes] = {}
    for entry in table.entries:
        name = _KNOWN_ITEMS.get(entry.item_id)
        if entry.item_id in items:
            raise CorruptImageError(f"VHDX metadata item {name or entry.item_id} appears twice")
        if name is None:
            if entry.is_required:
                raise UnsupportedFeatureError(f"VHDX metadata item {entry.item_id} is required but unknown")
            continue
        _check_item_bounds(entry, name, region_length)
        try:
            items[entry.item_id] = file.pread_exact(
                entry.length, region_offset + entry.offset, f"VHDX metadata item {name}"
            )
        except OutOfRangeError as err:
            raise CorruptImageError(str(err)) from err
    return parse_metadata(items)


def _check_item_bounds(entry: MetadataTableEntry, name: str, region_length: int) -> None:
    if entry.length > METADATA_ITEM_MAX_LENGTH:
        raise CorruptImageError(f"VHDX metadata item {name} is too long ({entry.length} bytes)")
    if entry.length and entry.offset < METADATA_TABLE_SIZE:
        raise CorruptImageError(f"VHDX metadata item {name} overlaps the metadata table")
    if entry.offset + entry.length > region_length:
        raise CorruptImageError(f"VHDX metadata item {name} lies outside the metadata region")


def bat_region_entries(params: DiskParameters) -> int:
    """BAT entries the BAT region must have room for, as QEMU 7.2 counts them (``vhdx_calc_bat_entries``).

    The geometry's count (§2.5), except for an empty disk without a parent: QEMU's 32-bit count of
    data blocks minus one wraps round, so it wants ``(2**32 - 1) >> log2(chunk ratio)`` entries and
    refuses the image ("Invalid argument") when the region holds fewer. ``qemu-img create`` writes
    a BAT region that large for size 0 (64 MiB with 8 MiB blocks), and so does blockfmt's create, so
    that either tool opens what either made; an image whose size was zeroed later is refused by
    both (a repair could only hand back an image QEMU cannot open).
    """
    geometry = params.geometry
    if geometry.disk_size or geometry.has_parent:
        return geometry.entry_count
    return 0xFFFFFFFF >> (geometry.chunk_ratio.bit_length() - 1)


def parse_metadata(items: dict[uuid.UUID, bytes]) -> DiskParameters:
    """Validate the known items (by item GUID) and turn them into :class:`DiskParameters`.

    :raises CorruptImageError: for a missing or out-of-range item, or a differencing image
        (HasParent) without a parent locator.
    """
    for guid, name in _REQUIRED_ITEMS.items():
        if guid not in items:
            raise CorruptImageError(f"VHDX metadata item {name} is missing")
    params = FileParameters.parse(items[FILE_PARAMETERS_GUID])
    locator = None
    if params.has_parent:
        raw_locator = items.get(PARENT_LOCATOR_GUID)
        if raw_locator is None:
            raise CorruptImageError("VHDX differencing image (HasParent) has no parent locator")
        locator = ParentLocator.parse(raw_locator)
    disk_size = _scalar(_U64, items[VIRTUAL_DISK_SIZE_GUID], "virtual disk size")
    logical = _scalar(_U32, items[LOGICAL_SECTOR_SIZE_GUID], "logical sector size")
    physical = _scalar(_U32, items[PHYSICAL_SECTOR_SIZE_GUID], "physical sector size")
    page83 = items[PAGE83_DATA_GUID]
    if len(page83) < _GUID_SIZE:
        raise CorruptImageError("VHDX metadata item page 83 data is truncated")
    block_size = params.block_size
    if not BLOCK_SIZE_MIN <= block_size <= BLOCK_SIZE_MAX or block_size & (block_size - 1):
        raise CorruptImageError(f"VHDX block size {block_size} is invalid")
    if logical not in SECTOR_SIZES:
        raise CorruptImageError(f"VHDX logical sector size {logical} is invalid")
    if physical not in SECTOR_SIZES:
        raise CorruptImageError(f"VHDX physical sector size {physical} is invalid")
    if disk_size > MAX_DISK_SIZE or disk_size % logical:
        raise CorruptImageError(f"VHDX virtual disk size {disk_size} is invalid")
    return DiskParameters(
        block_size,
        disk_size,
        logical,
        physical,
        uuid.UUID(bytes_le=page83[:_GUID_SIZE]),
        params.leave_blocks_allocated,
        locator,
    )


def build_metadata(params: DiskParameters) -> bytes:
    """The metadata region of an image: table, then the required items at 64 KiB (§2.6), and the
    parent locator of a differencing image (not a virtual-disk item, required: §2.6.2.6)."""
    file_parameters = FileParameters(params.block_size, params.leave_blocks_allocated, params.has_parent)
    payloads = [
        (FILE_PARAMETERS_GUID, False, file_parameters.pack()),
        (VIRTUAL_DISK_SIZE_GUID, True, _U64.pack(params.disk_size)),
        (PAGE83_DATA_GUID, True, params.page83.bytes_le),
        (LOGICAL_SECTOR_SIZE_GUID, True, _U32.pack(params.logical_sector_size)),
        (PHYSICAL_SECTOR_SIZE_GUID, True, _U32.pack(params.physical_sector_size)),
    ]
    if params.parent_locator is not None:
        payloads.append((PARENT_LOCATOR_GUID, False, params.parent_locator.pack()))
    entries = []
    data = bytearray()
    for guid, virtual_disk, payload in payloads:
        entries.append(
            MetadataTableEntry(guid, METADATA_TABLE_SIZE + len(data), len(payload), False, virtual_disk, True)
        )
        data += payload
    return MetadataTable(tuple(entries)).pack() + bytes(data)


def _scalar(fmt: struct.Struct, raw: bytes, name: str) -> int:
    if len(raw) < fmt.size:
        raise CorruptImageError(f"VHDX metadata item {name} is truncated")
    return fmt.unpack_from(raw)[0]
