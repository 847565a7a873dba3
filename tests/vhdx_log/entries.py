"""Test helpers: build log entries byte by byte (valid or deliberately broken) and put them in images."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from blockfmt_vhdx.checksum import stamp_checksum
from blockfmt_vhdx.constants import CHECKSUM_OFFSET, DESCRIPTOR_SIZE, LOG_SECTOR_SIZE
from blockfmt_vhdx.log_structs import (
    DataSector,
    LogEntryHeader,
    ZeroDescriptor,
    descriptor_sectors,
)

#: (file_offset, 4 KiB of data) or (file_offset, zero length) for a zero descriptor
Change = tuple[int, bytes] | tuple[int, int]


def build_entry(
    sequence_number: int,
    tail: int,
    guid: uuid.UUID,
    changes: Sequence[Change],
    *,
    file_size: int,
    last_file_offset: int | None = None,
    entry_length: int | None = None,
    descriptor_count: int | None = None,
) -> bytearray:
    """One log entry in the layout QEMU and Hyper-V write, checksum stamped."""
    data_changes = [c for c in changes if isinstance(c[1], bytes)]
    table = descriptor_sectors(len(changes)) * LOG_SECTOR_SIZE
    length = entry_length or table + len(data_changes) * LOG_SECTOR_SIZE
    header = LogEntryHeader(
        0,
        length,
        tail,
        sequence_number,
        len(changes) if descriptor_count is None else descriptor_count,
        guid,
        file_size,
        file_size if last_file_offset is None else last_file_offset,
    )
    entry = bytearray(length)
    entry[: LogEntryHeader.SIZE] = header.pack()
    data_index = 0
    for index, (offset, payload) in enumerate(changes):
        at = LogEntryHeader.SIZE + index * DESCRIPTOR_SIZE
        if isinstance(payload, bytes):
            descriptor, sector = DataSector.split(payload, offset, sequence_number)
            entry[at : at + DESCRIPTOR_SIZE] = descriptor.pack()
            start = table + data_index * LOG_SECTOR_SIZE
            entry[start : start + LOG_SECTOR_SIZE] = sector.pack()
            data_index += 1
        else:
            entry[at : at + DESCRIPTOR_SIZE] = ZeroDescriptor(payload, offset, sequence_number).pack()
    stamp_checksum(entry, CHECKSUM_OFFSET)
    return entry


def put_in_log(path: Path, log_offset: int, log_length: int, position: int, entry: bytes) -> None:
    """Write *entry* into the circular log of the image at *path*, wrapping at the end."""
    first = min(len(entry), log_length - position)
    with open(path, "r+b") as f:
        f.seek(log_offset + position)
        f.write(entry[:first])
        if first < len(entry):
            f.seek(log_offset)
            f.write(entry[first:])
