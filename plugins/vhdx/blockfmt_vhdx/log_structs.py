"""On-disk records of the VHDX metadata log (MS-VHDX §2.3.1): parse and pack, no I/O.

The log is a circular buffer of 4 KiB log sectors. One log entry is a run of sectors: the first
holds the 64-byte :class:`LogEntryHeader` followed by 32-byte descriptors, further descriptor
sectors follow when there are more than fit, then one :class:`DataSector` per data descriptor::

    [ header | desc desc ... ][ desc ... ] ... [ data ][ data ] ...

A :class:`DataDescriptor` plus its :class:`DataSector` carry one 4 KiB sector of metadata to
write at ``file_offset``: bytes 0-7 live in the descriptor (``leading_bytes``), bytes 8-4091 in
the data sector, bytes 4092-4095 in the descriptor again (``trailing_bytes``); the data sector's
first and last four bytes hold the halves of the entry's sequence number instead, so a torn
sector write is detected. A :class:`ZeroDescriptor` zeroes ``zero_length`` bytes.

Every ``parse`` checks the buffer length and the record's own fields and raises
:class:`~blockfmt.errors.CorruptImageError`; relations between records (sequence numbers, GUID,
ranges in the file) are checked by :mod:`blockfmt_vhdx.log`.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import ClassVar, Self

from blockfmt.errors import CorruptImageError

from .constants import (
    DATA_DESCRIPTOR_SIGNATURE,
    DATA_SECTOR_SIGNATURE,
    DESCRIPTOR_SIZE,
    DESCRIPTORS_PER_SECTOR,
    LOG_ENTRY_SIGNATURE,
    LOG_SECTOR_SIZE,
    ZERO_DESCRIPTOR_SIGNATURE,
)

__all__ = [
    "DataDescriptor",
    "DataSector",
    "Descriptor",
    "LogEntryHeader",
    "ZeroDescriptor",
    "descriptor_sectors",
    "parse_descriptor",
]

#: bytes 0-7 of a logged sector are kept in the data descriptor
_LEADING_SIZE = 8
#: bytes 4092-4095 of a logged sector are kept in the data descriptor
_TRAILING_SIZE = 4
#: bytes 8-4091 of a logged sector are kept in the data sector
_DATA_SIZE = LOG_SECTOR_SIZE - _LEADING_SIZE - _TRAILING_SIZE
_HIGH_SHIFT = 32
_LOW_MASK = (1 << _HIGH_SHIFT) - 1


def _require_length(buf: bytes | bytearray | memoryview, size: int, what: str) -> None:
    if len(buf) < size:
        raise CorruptImageError(f"VHDX {what} is truncated ({len(buf)} of {size} bytes)")


@dataclass(frozen=True, slots=True)
class LogEntryHeader:
    """The 64-byte header that starts each log entry (MS-VHDX §2.3.1.1).

    :ivar checksum: CRC-32C over the whole entry (``entry_length`` bytes) with this field zeroed.
    :ivar entry_length: bytes in the entry, a multiple of 4 KiB.
    :ivar tail: log-relative offset of the first entry of the sequence this entry ends.
    :ivar sequence_number: never zero; consecutive entries of a sequence count up by one.
    :ivar log_guid: must equal the header's LogGuid, else the entry belongs to an older log.
    :ivar flushed_file_offset: a file size known to be durable when the entry was written.
    :ivar last_file_offset: a file size that holds every allocated structure.
    """

    STRUCT: ClassVar[struct.Struct] = struct.Struct("<4sIIIQII16sQQ")
    SIZE: ClassVar[int] = STRUCT.size

    checksum: int
    entry_length: int
    tail: int
    sequence_number: int
    descriptor_count: int
    log_guid: uuid.UUID
    flushed_file_offset: int
    last_file_offset: int
    reserved: int = 0

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Decode and check one header's own fields.

        :raises CorruptImageError: short buffer, wrong signature, a length or tail that is not a
            whole number of log sectors, sequence number zero, or more descriptors than fit.
        """
        _require_length(buf, cls.SIZE, "log entry header")
        (sig, checksum, entry_length, tail, seq, count, reserved, guid, flushed, last) = (
            cls.STRUCT.unpack_from(buf)
        )
        if sig != LOG_ENTRY_SIGNATURE:
            raise CorruptImageError("VHDX log entry has an invalid signature")
        if entry_length == 0 or entry_length % LOG_SECTOR_SIZE:
            raise CorruptImageError(f"VHDX log entry length {entry_length} is not a multiple of 4 KiB")
        if tail % LOG_SECTOR_SIZE:
            raise CorruptImageError(f"VHDX log entry tail {tail} is not a multiple of 4 KiB")
        if seq == 0:
            raise CorruptImageError("VHDX log entry has sequence number 0")
        if descriptor_sectors(count) * LOG_SECTOR_SIZE > entry_length:
            raise CorruptImageError(f"VHDX log entry of {entry_length} bytes cannot hold {count} descriptors")
        return cls(
            checksum, entry_length, tail, seq, count, uuid.UUID(bytes_le=guid), flushed, last, reserved
        )

    def pack(self) -> bytes:
        """Encode the header; the checksum is stamped over the whole entry by the writer."""
        return self.STRUCT.pack(
            LOG_ENTRY_SIGNATURE,
            self.checksum,
            self.entry_length,
            self.tail,
            self.sequence_number,
            self.descriptor_count,
            self.reserved,
            self.log_guid.bytes_le,
            self.flushed_file_offset,
            self.last_file_offset,
        )


def descriptor_sectors(descriptor_count: int) -> int:
    """Log sectors taken by the header plus *descriptor_count* descriptors (at least one).

    The header takes the room of two descriptors in the first sector (MS-VHDX §2.3.1).
    """
    header_slots = LogEntryHeader.SIZE // DESCRIPTOR_SIZE
    return -(-(descriptor_count + header_slots) // DESCRIPTORS_PER_SECTOR)


@dataclass(frozen=True, slots=True)
class ZeroDescriptor:
    """Zero ``zero_length`` bytes at ``file_offset`` (MS-VHDX §2.3.1.2); both multiples of 4 KiB."""

    STRUCT: ClassVar[struct.Struct] = struct.Struct("<4sIQQQ")
    SIZE: ClassVar[int] = STRUCT.size

    zero_length: int
    file_offset: int
    sequence_number: int
    reserved: int = 0

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Decode a zero descriptor.

        :raises CorruptImageError: short buffer, wrong signature or an unaligned range.
        """
        _require_length(buf, cls.SIZE, "log zero descriptor")
        sig, reserved, length, offset, seq = cls.STRUCT.unpack_from(buf)
        if sig != ZERO_DESCRIPTOR_SIGNATURE:
            raise CorruptImageError("VHDX log zero descriptor has an invalid signature")
        if length % LOG_SECTOR_SIZE or offset % LOG_SECTOR_SIZE:
            raise CorruptImageError(
                f"VHDX log zero descriptor range {offset}+{length} is not aligned to 4 KiB"
            )
        return cls(length, offset, seq, reserved)

    def pack(self) -> bytes:
        """Encode the descriptor."""
        return self.STRUCT.pack(
            ZERO_DESCRIPTOR_SIGNATURE, self.reserved, self.zero_length, self.file_offset, self.sequence_number
        )


@dataclass(frozen=True, slots=True)
class DataDescriptor:
    """Write one 4 KiB sector at ``file_offset`` from the matching :class:`DataSector` (MS-VHDX §2.3.1.3).

    :ivar leading_bytes: bytes 0-7 of the sector.
    :ivar trailing_bytes: bytes 4092-4095 of the sector.
    """

    STRUCT: ClassVar[struct.Struct] = struct.Struct(f"<4s{_TRAILING_SIZE}s{_LEADING_SIZE}sQQ")
    SIZE: ClassVar[int] = STRUCT.size

    trailing_bytes: bytes
    leading_bytes: bytes
    file_offset: int
    sequence_number: int

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Decode a data descriptor.

        :raises CorruptImageError: short buffer, wrong signature or an unaligned target.
        """
        _require_length(buf, cls.SIZE, "log data descriptor")
        sig, trailing, leading, offset, seq = cls.STRUCT.unpack_from(buf)
        if sig != DATA_DESCRIPTOR_SIGNATURE:
            raise CorruptImageError("VHDX log data descriptor has an invalid signature")
        if offset % LOG_SECTOR_SIZE:
            raise CorruptImageError(f"VHDX log data descriptor offset {offset} is not aligned to 4 KiB")
        return cls(trailing, leading, offset, seq)

    def pack(self) -> bytes:
        """Encode the descriptor."""
        return self.STRUCT.pack(
            DATA_DESCRIPTOR_SIGNATURE,
            self.trailing_bytes,
            self.leading_bytes,
            self.file_offset,
            self.sequence_number,
        )

    def sector(self, data_sector: DataSector) -> bytes:
        """The whole 4 KiB sector this descriptor and its data sector describe."""
        return self.leading_bytes + data_sector.data + self.trailing_bytes


@dataclass(frozen=True, slots=True)
class DataSector:
    """A log sector holding bytes 8-4091 of one logged sector (MS-VHDX §2.3.1.4).

    :ivar sequence_number: rebuilt from the SequenceHigh (first) and SequenceLow (last) halves;
        :meth:`parse` rejects a sector whose halves are not those of *expected_sequence*.
    """

    STRUCT: ClassVar[struct.Struct] = struct.Struct(f"<4sI{_DATA_SIZE}sI")
    SIZE: ClassVar[int] = STRUCT.size

    sequence_number: int
    data: bytes

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Decode a data sector.

        :raises CorruptImageError: short buffer or wrong signature.
        """
        _require_length(buf, cls.SIZE, "log data sector")
        sig, high, data, low = cls.STRUCT.unpack_from(buf)
        if sig != DATA_SECTOR_SIGNATURE:
            raise CorruptImageError("VHDX log data sector has an invalid signature")
        return cls((high << _HIGH_SHIFT) | low, data)

    @classmethod
    def split(
        cls, sector: bytes | bytearray | memoryview, file_offset: int, sequence_number: int
    ) -> tuple[DataDescriptor, DataSector]:
        """Spread one 4 KiB *sector* over a descriptor and a data sector, as a writer must."""
        raw = bytes(sector)
        if len(raw) != LOG_SECTOR_SIZE:
            raise ValueError(f"a logged sector is {LOG_SECTOR_SIZE} bytes, not {len(raw)}")
        descriptor = DataDescriptor(
            raw[LOG_SECTOR_SIZE - _TRAILING_SIZE :], raw[:_LEADING_SIZE], file_offset, sequence_number
        )
        return descriptor, cls(sequence_number, raw[_LEADING_SIZE : LOG_SECTOR_SIZE - _TRAILING_SIZE])

    def pack(self) -> bytes:
        """Encode the data sector."""
        return self.STRUCT.pack(
            DATA_SECTOR_SIGNATURE,
            self.sequence_number >> _HIGH_SHIFT,
            self.data,
            self.sequence_number & _LOW_MASK,
        )


#: either kind of log descriptor
Descriptor = ZeroDescriptor | DataDescriptor

_DESCRIPTOR_TYPES: dict[bytes, type[ZeroDescriptor] | type[DataDescriptor]] = {
    ZERO_DESCRIPTOR_SIGNATURE: ZeroDescriptor,
    DATA_DESCRIPTOR_SIGNATURE: DataDescriptor,
}


def parse_descriptor(buf: bytes | bytearray | memoryview) -> Descriptor:
    """Decode a zero or data descriptor by its signature.

    :raises CorruptImageError: short buffer, unknown signature or invalid fields.
    """
    _require_length(buf, DESCRIPTOR_SIZE, "log descriptor")
    kind = _DESCRIPTOR_TYPES.get(bytes(buf[:4]))
    if kind is None:
        raise CorruptImageError("VHDX log descriptor has an invalid signature")
    return kind.parse(buf)
