"""Log entry header, descriptors and data sectors (MS-VHDX §2.3.1): golden bytes, round trips, rejects."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blockfmt.errors import CorruptImageError
from blockfmt_vhdx.constants import LOG_SECTOR_SIZE
from blockfmt_vhdx.log_structs import (
    DataDescriptor,
    DataSector,
    LogEntryHeader,
    ZeroDescriptor,
    descriptor_sectors,
    parse_descriptor,
)

# The entry QEMU left unreplayed in iotest-dirtylog-10G-4M.vhdx (log offset 49152).
GOLDEN_HEADER = bytes.fromhex(
    "6c6f6765771b75de0020000000c0000007000000000000000100000000000000"
    "bc5527c87f424512b72cda70aaabe0310000e001000000000000e00100000000"
)
GOLDEN_DESCRIPTOR = bytes.fromhex("6465736300000000060080000000000000002000000000000700000000000000")


def test_sizes_match_the_spec():
    """MS-VHDX §2.3.1: header 64 bytes, descriptors 32, data sector one 4 KiB log sector."""
    assert LogEntryHeader.SIZE == 64
    assert ZeroDescriptor.SIZE == DataDescriptor.SIZE == 32
    assert DataSector.SIZE == LOG_SECTOR_SIZE == 4096


def test_golden_header_from_qemu():
    header = LogEntryHeader.parse(GOLDEN_HEADER)
    assert header.entry_length == 8192
    assert header.tail == 49152
    assert header.sequence_number == 7
    assert header.descriptor_count == 1
    assert header.log_guid == uuid.UUID("c82755bc-427f-1245-b72c-da70aaabe031")
    assert header.flushed_file_offset == header.last_file_offset == 31457280
    assert header.checksum == 0xDE751B77
    assert header.pack() == GOLDEN_HEADER


def test_golden_data_descriptor_from_qemu():
    descriptor = parse_descriptor(GOLDEN_DESCRIPTOR)
    assert isinstance(descriptor, DataDescriptor)
    assert descriptor.file_offset == 0x200000
    assert descriptor.sequence_number == 7
    assert descriptor.leading_bytes == bytes.fromhex("0600800000000000")
    assert descriptor.pack() == GOLDEN_DESCRIPTOR


@pytest.mark.parametrize(("count", "sectors"), [(0, 1), (1, 1), (126, 1), (127, 2), (254, 2), (255, 3)])
def test_descriptor_sectors_count_the_header_as_two_slots(count, sectors):
    assert descriptor_sectors(count) == sectors


def test_data_sector_split_and_join_round_trip():
    sector = bytes(range(256)) * 16
    descriptor, data_sector = DataSector.split(sector, 0x300000, (5 << 32) | 7)
    packed = data_sector.pack()
    assert packed[:4] == b"data" and packed[4:8] == (5).to_bytes(4, "little")
    assert packed[-4:] == (7).to_bytes(4, "little")
    again = DataSector.parse(packed)
    assert again.sequence_number == (5 << 32) | 7
    assert DataDescriptor.parse(descriptor.pack()).sector(again) == sector


@given(
    entry_sectors=st.integers(1, 256),
    tail_sector=st.integers(0, 255),
    seq=st.integers(1, 2**64 - 1),
    flushed=st.integers(0, 2**64 - 1),
    last=st.integers(0, 2**64 - 1),
    guid=st.uuids(),
    checksum=st.integers(0, 2**32 - 1),
)
def test_header_round_trip(entry_sectors, tail_sector, seq, flushed, last, guid, checksum):
    header = LogEntryHeader(
        checksum, entry_sectors * LOG_SECTOR_SIZE, tail_sector * LOG_SECTOR_SIZE, seq, 0, guid, flushed, last
    )
    assert LogEntryHeader.parse(header.pack()) == header


@given(length=st.integers(0, 2**40), offset=st.integers(0, 2**40), seq=st.integers(0, 2**64 - 1))
def test_zero_descriptor_round_trip(length, offset, seq):
    descriptor = ZeroDescriptor(length * LOG_SECTOR_SIZE, offset * LOG_SECTOR_SIZE, seq)
    assert parse_descriptor(descriptor.pack()) == descriptor


@pytest.mark.parametrize(
    ("parser", "buf", "message"),
    [
        (LogEntryHeader.parse, GOLDEN_HEADER[:63], "VHDX log entry header is truncated (63 of 64 bytes)"),
        (LogEntryHeader.parse, b"xoge" + GOLDEN_HEADER[4:], "VHDX log entry has an invalid signature"),
        (parse_descriptor, GOLDEN_DESCRIPTOR[:31], "VHDX log descriptor is truncated (31 of 32 bytes)"),
        (parse_descriptor, b"nope" + GOLDEN_DESCRIPTOR[4:], "VHDX log descriptor has an invalid signature"),
        (DataSector.parse, b"data" + bytes(100), "VHDX log data sector is truncated (104 of 4096 bytes)"),
        (DataSector.parse, bytes(4096), "VHDX log data sector has an invalid signature"),
    ],
)
def test_short_or_garbled_input_is_rejected(parser, buf, message):
    with pytest.raises(CorruptImageError) as info:
        parser(buf)
    assert str(info.value) == message


def _header_with(**fields) -> bytes:
    return dataclasses.replace(LogEntryHeader.parse(GOLDEN_HEADER), **fields).pack()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"entry_length": 0}, "VHDX log entry length 0 is not a multiple of 4 KiB"),
        ({"entry_length": 4097}, "VHDX log entry length 4097 is not a multiple of 4 KiB"),
        ({"tail": 512}, "VHDX log entry tail 512 is not a multiple of 4 KiB"),
        ({"sequence_number": 0}, "VHDX log entry has sequence number 0"),
        ({"descriptor_count": 2**32 - 1}, "VHDX log entry of 8192 bytes cannot hold 4294967295 descriptors"),
        ({"descriptor_count": 255}, "VHDX log entry of 8192 bytes cannot hold 255 descriptors"),
    ],
)
def test_header_fields_out_of_range_are_rejected(fields, message):
    with pytest.raises(CorruptImageError) as info:
        LogEntryHeader.parse(_header_with(**fields))
    assert str(info.value) == message


def test_unaligned_descriptors_are_rejected():
    with pytest.raises(CorruptImageError, match="not aligned to 4 KiB"):
        parse_descriptor(ZeroDescriptor(4096, 100, 1).pack())
    with pytest.raises(CorruptImageError, match="not aligned to 4 KiB"):
        parse_descriptor(ZeroDescriptor(100, 4096, 1).pack())
    with pytest.raises(CorruptImageError, match="offset 4097 is not aligned"):
        parse_descriptor(DataDescriptor(bytes(4), bytes(8), 4097, 1).pack())
