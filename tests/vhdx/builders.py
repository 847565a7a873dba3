"""Images built or altered with the plugin's own serializers (what qemu-img cannot make)."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import blockfmt
from blockfmt_vhdx.constants import (
    FILE_PARAMETERS_GUID,
    LOGICAL_SECTOR_SIZE_GUID,
    METADATA_REGION_GUID,
    METADATA_TABLE_SIZE,
    PAGE83_DATA_GUID,
    PARENT_LOCATOR_GUID,
    PHYSICAL_SECTOR_SIZE_GUID,
    REGION_TABLE1_OFFSET,
    VHDX_PARENT_LOCATOR_TYPE,
    VIRTUAL_DISK_SIZE_GUID,
)
from blockfmt_vhdx.structs import (
    FileParameters,
    MetadataTable,
    MetadataTableEntry,
    ParentLocator,
    RegionTable,
)

MiB = 1 << 20


def region_offset(path: Path, guid: uuid.UUID) -> int:
    with open(path, "rb") as f:
        f.seek(REGION_TABLE1_OFFSET)
        table = RegionTable.parse(f.read(RegionTable.SIZE))
    return next(e.file_offset for e in table.entries if e.guid == guid)


def write_metadata(path: Path, items: list[tuple[uuid.UUID, bytes, bool]]) -> None:
    """Replace the metadata region with *items* (guid, payload, required) laid out after the table."""
    entries, data = [], bytearray()
    for guid, payload, required in items:
        offset = METADATA_TABLE_SIZE + len(data)
        entries.append(MetadataTableEntry(guid, offset, len(payload), False, True, required))
        data += payload
    with open(path, "r+b") as f:
        f.seek(region_offset(path, METADATA_REGION_GUID))
        f.write(MetadataTable(tuple(entries)).pack() + bytes(data))


def standard_items(
    size: int, block_size: int, *, logical: int = 512, physical: int = 4096, has_parent: bool = False
) -> list[tuple[uuid.UUID, bytes, bool]]:
    return [
        (FILE_PARAMETERS_GUID, FileParameters(block_size, has_parent=has_parent).pack(), True),
        (VIRTUAL_DISK_SIZE_GUID, struct.pack("<Q", size), True),
        (PAGE83_DATA_GUID, uuid.uuid4().bytes_le, True),
        (LOGICAL_SECTOR_SIZE_GUID, struct.pack("<I", logical), True),
        (PHYSICAL_SECTOR_SIZE_GUID, struct.pack("<I", physical), True),
    ]


def make_differencing(path: Path) -> Path:
    """A dynamic image turned into a differencing one: HasParent and a VHDX parent locator."""
    blockfmt.create(path, "vhdx", 64 * MiB, block_size=MiB)
    locator = ParentLocator(
        VHDX_PARENT_LOCATOR_TYPE,
        (
            ("parent_linkage", "{0f0e0d0c-0b0a-0908-0706-050403020100}"),
            ("relative_path", "..\\parent.vhdx"),
        ),
    )
    items = standard_items(64 * MiB, MiB, has_parent=True)
    items.append((PARENT_LOCATOR_GUID, locator.pack(), True))
    write_metadata(path, items)
    return path
