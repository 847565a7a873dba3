"""On-disk structures: sizes from the spec, round trips, refusal of short and garbled input."""

from __future__ import annotations

import uuid

import pytest

from blockfmt.errors import CorruptImageError
from blockfmt_vhdx.constants import BAT_REGION_GUID, METADATA_REGION_GUID, ZERO_GUID
from blockfmt_vhdx.structs import (
    FileIdentifier,
    FileParameters,
    Header,
    MetadataTable,
    MetadataTableEntry,
    ParentLocator,
    RegionTable,
    RegionTableEntry,
)

HEADER = Header(5, uuid.uuid4(), uuid.uuid4(), ZERO_GUID, 0, 1, 1 << 20, 1 << 20)


def test_sizes_match_the_spec() -> None:
    """MS-VHDX §2.2: file identifier 8+512, header fields 80 in a 4 KiB slot, entries 32 bytes."""
    assert FileIdentifier.STRUCT.size == 520
    assert Header.STRUCT.size == 80 and Header.SIZE == 4096
    assert RegionTable.STRUCT.size == 16 and RegionTableEntry.STRUCT.size == 32
    assert MetadataTable.STRUCT.size == 32 and MetadataTableEntry.STRUCT.size == 32
    assert FileParameters.STRUCT.size == 8


def test_bat_region_guid_bytes_on_disk() -> None:
    """GUIDs are stored mixed-endian: 2DC27766-F623-4200-... starts with 66 77 C2 2D on disk."""
    assert BAT_REGION_GUID.bytes_le[:8] == bytes.fromhex("6677c22d23f60042")
    assert METADATA_REGION_GUID.bytes_le[:4] == bytes.fromhex("06a27c8b")


def test_header_round_trip_and_checksum() -> None:
    raw = HEADER.pack()
    assert raw[:4] == b"head" and len(raw) == 4096
    assert Header.parse(raw) == HEADER
    damaged = bytearray(raw)
    damaged[4000] ^= 1  # inside the reserved area: still covered by the checksum
    with pytest.raises(CorruptImageError, match="VHDX header checksum mismatch"):
        Header.parse(damaged)


def test_short_buffers_are_refused() -> None:
    for cls, what in ((Header, "header"), (RegionTable, "region table"), (MetadataTable, "metadata table")):
        with pytest.raises(CorruptImageError) as info:
            cls.parse(b"\0" * 10)
        assert str(info.value) == f"VHDX {what} is truncated (10 of {cls.SIZE} bytes)"


def test_region_table_round_trip() -> None:
    table = RegionTable((RegionTableEntry(BAT_REGION_GUID, 3 << 20, 1 << 20, True),))
    assert RegionTable.parse(table.pack()) == table


def test_region_table_with_too_many_entries() -> None:
    raw = bytearray(RegionTable(()).pack())
    raw[8:12] = (2048).to_bytes(4, "little")
    from blockfmt_vhdx.checksum import stamp_checksum

    stamp_checksum(raw, 4)
    with pytest.raises(CorruptImageError, match=r"too many entries \(2048\)"):
        RegionTable.parse(raw)


def test_metadata_table_round_trip() -> None:
    entry = MetadataTableEntry(uuid.uuid4(), 65536, 8, False, True, True)
    table = MetadataTable((entry,))
    assert MetadataTable.parse(table.pack()) == table


def test_parent_locator_round_trip_and_bad_offsets() -> None:
    locator = ParentLocator(uuid.uuid4(), (("relative_path", "a.vhdx"), ("parent_linkage", "{x}")))
    assert ParentLocator.parse(locator.pack()) == locator
    raw = bytearray(locator.pack())
    raw[20:24] = (10_000).to_bytes(4, "little")  # first key offset far outside the item
    with pytest.raises(CorruptImageError, match="outside the item"):
        ParentLocator.parse(raw)
