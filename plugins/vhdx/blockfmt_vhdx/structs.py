"""On-disk structures of VHDX: one frozen record and one :class:`struct.Struct` each, no I/O.

``parse(buf)`` rejects short buffers, bad signatures, bad checksums and out-of-range fields with
:class:`~blockfmt.errors.CorruptImageError`; ``pack()`` is its exact inverse (checksums stamped).
Layouts: MS-VHDX v1.00 §2.2 (header section) and §2.6 (metadata).
"""

from __future__ import annotations

import struct
import uuid

from blockfmt.errors import CorruptImageError
from blockfmt.records import FrozenRecord

from .checksum import stamp_checksum, verify_checksum
from .constants import (
    CHECKSUM_OFFSET,
    CREATOR_SIZE,
    FILE_SIGNATURE,
    HEADER_SIGNATURE,
    HEADER_SIZE,
    HEADER_VERSION,
    METADATA_IS_REQUIRED,
    METADATA_IS_USER,
    METADATA_IS_VIRTUAL_DISK,
    METADATA_MAX_ENTRIES,
    METADATA_SIGNATURE,
    METADATA_TABLE_SIZE,
    PARAMS_HAS_PARENT,
    PARAMS_LEAVE_BLOCKS_ALLOCATED,
    REGION_MAX_ENTRIES,
    REGION_REQUIRED,
    REGION_SIGNATURE,
    REGION_TABLE_SIZE,
    ZERO_GUID,
)

__all__ = [
    "FileIdentifier",
    "FileParameters",
    "Header",
    "MetadataTable",
    "MetadataTableEntry",
    "ParentLocator",
    "RegionTable",
    "RegionTableEntry",
]


def _need(buf: bytes | bytearray | memoryview, size: int, what: str) -> None:
    if len(buf) < size:
        raise CorruptImageError(f"VHDX {what} is truncated ({len(buf)} of {size} bytes)")


def _guid(raw: bytes) -> uuid.UUID:
    return uuid.UUID(bytes_le=bytes(raw))


class FileIdentifier(FrozenRecord):
    """File type identifier at offset 0 (MS-VHDX §2.2.1): signature and an informative creator."""

    STRUCT = struct.Struct(f"<8s{CREATOR_SIZE}s")

    _fields = ("creator",)
    __slots__ = _fields
    creator: str

    def __init__(self, creator: str = "") -> None:
        self._fill(creator)

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> FileIdentifier:
        _need(buf, cls.STRUCT.size, "file identifier")
        signature, raw_creator = cls.STRUCT.unpack_from(buf)
        if signature != FILE_SIGNATURE:
            raise CorruptImageError("Invalid VHDX file signature (expected 'vhdxfile')")
        creator = raw_creator.decode("utf-16-le", errors="replace").split("\0", 1)[0]
        return cls(creator)

    def pack(self) -> bytes:
        raw = self.creator.encode("utf-16-le")[:CREATOR_SIZE]
        return self.STRUCT.pack(FILE_SIGNATURE, raw)


class Header(FrozenRecord):
    """One of the two headers (MS-VHDX §2.2.2); the checksum covers the whole 4 KiB slot."""

    STRUCT = struct.Struct("<4sIQ16s16s16sHHIQ")
    SIZE = HEADER_SIZE

    _fields = (
        "sequence_number",
        "file_write_guid",
        "data_write_guid",
        "log_guid",
        "log_version",
        "version",
        "log_length",
        "log_offset",
    )
    __slots__ = _fields
    sequence_number: int
    file_write_guid: uuid.UUID
    data_write_guid: uuid.UUID
    log_guid: uuid.UUID
    log_version: int
    version: int
    log_length: int
    log_offset: int

    def __init__(
        self,
        sequence_number: int,
        file_write_guid: uuid.UUID,
        data_write_guid: uuid.UUID,
        log_guid: uuid.UUID,
        log_version: int,
        version: int,
        log_length: int,
        log_offset: int,
    ) -> None:
        self._fill(
            sequence_number,
            file_write_guid,
            data_write_guid,
            log_guid,
            log_version,
            version,
            log_length,
            log_offset,
        )

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Header:
        """:raises CorruptImageError: on a short buffer, bad checksum, signature or version."""
        _need(buf, cls.SIZE, "header")
        view = memoryview(buf)[: cls.SIZE]
        if not verify_checksum(view, CHECKSUM_OFFSET):
            raise CorruptImageError("VHDX header checksum mismatch")
        (sig, _crc, seq, fwg, dwg, lg, log_version, version, log_length, log_offset) = cls.STRUCT.unpack_from(
            view
        )
        if sig != HEADER_SIGNATURE:
            raise CorruptImageError("Invalid VHDX header signature")
        if version != HEADER_VERSION:
            raise CorruptImageError(f"Unsupported VHDX header version {version}")
        return cls(seq, _guid(fwg), _guid(dwg), _guid(lg), log_version, version, log_length, log_offset)

    def pack(self) -> bytes:
        buf = bytearray(self.SIZE)
        self.STRUCT.pack_into(
            buf,
            0,
            HEADER_SIGNATURE,
            0,
            self.sequence_number,
            self.file_write_guid.bytes_le,
            self.data_write_guid.bytes_le,
            self.log_guid.bytes_le,
            self.log_version,
            self.version,
            self.log_length,
            self.log_offset,
        )
        stamp_checksum(buf, CHECKSUM_OFFSET)
        return bytes(buf)

    @property
    def has_log(self) -> bool:
        """A non-zero LogGuid says the log may hold entries to replay (§2.2.2)."""
        return self.log_guid != ZERO_GUID


class RegionTableEntry(FrozenRecord):
    """A region table entry (MS-VHDX §2.2.3.2)."""

    STRUCT = struct.Struct("<16sQII")

    _fields = ("guid", "file_offset", "length", "required")
    __slots__ = _fields
    guid: uuid.UUID
    file_offset: int
    length: int
    required: bool

    def __init__(self, guid: uuid.UUID, file_offset: int, length: int, required: bool) -> None:
        self._fill(guid, file_offset, length, required)

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> RegionTableEntry:
        _need(buf, offset + cls.STRUCT.size, "region table entry")
        guid, file_offset, length, bits = cls.STRUCT.unpack_from(buf, offset)
        return cls(_guid(guid), file_offset, length, bool(bits & REGION_REQUIRED))

    def pack(self) -> bytes:
        return self.STRUCT.pack(
            self.guid.bytes_le, self.file_offset, self.length, REGION_REQUIRED if self.required else 0
        )


class RegionTable(FrozenRecord):
    """The region table (MS-VHDX §2.2.3): a 16-byte header and up to 2047 entries in 64 KiB."""

    STRUCT = struct.Struct("<4sIII")
    SIZE = REGION_TABLE_SIZE

    _fields = ("entries",)
    __slots__ = _fields
    entries: tuple[RegionTableEntry, ...]

    def __init__(self, entries: tuple[RegionTableEntry, ...] = ()) -> None:
        self._fill(entries)

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> RegionTable:
        _need(buf, cls.SIZE, "region table")
        view = memoryview(buf)[: cls.SIZE]
        if not verify_checksum(view, CHECKSUM_OFFSET):
            raise CorruptImageError("VHDX region table checksum mismatch")
        sig, _crc, count, _reserved = cls.STRUCT.unpack_from(view)
        if sig != REGION_SIGNATURE:
            raise CorruptImageError("Invalid VHDX region table signature")
        if count > REGION_MAX_ENTRIES:
            raise CorruptImageError(f"VHDX region table has too many entries ({count})")
        size = RegionTableEntry.STRUCT.size
        return cls(tuple(RegionTableEntry.parse(view, cls.STRUCT.size + i * size) for i in range(count)))

    def pack(self) -> bytes:
        buf = bytearray(self.SIZE)
        self.STRUCT.pack_into(buf, 0, REGION_SIGNATURE, 0, len(self.entries), 0)
        pos = self.STRUCT.size
        for entry in self.entries:
            raw = entry.pack()
            buf[pos : pos + len(raw)] = raw
            pos += len(raw)
        stamp_checksum(buf, CHECKSUM_OFFSET)
        return bytes(buf)


class MetadataTableEntry(FrozenRecord):
    """A metadata table entry (MS-VHDX §2.6.1.2); *offset* is relative to the metadata region."""

    STRUCT = struct.Struct("<16sIII4x")

    _fields = ("item_id", "offset", "length", "is_user", "is_virtual_disk", "is_required")
    __slots__ = _fields
    item_id: uuid.UUID
    offset: int
    length: int
    is_user: bool
    is_virtual_disk: bool
    is_required: bool

    def __init__(
        self,
        item_id: uuid.UUID,
        offset: int,
        length: int,
        is_user: bool = False,
        is_virtual_disk: bool = False,
        is_required: bool = False,
    ) -> None:
        self._fill(item_id, offset, length, is_user, is_virtual_disk, is_required)

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> MetadataTableEntry:
        _need(buf, offset + cls.STRUCT.size, "metadata table entry")
        item_id, item_offset, length, bits = cls.STRUCT.unpack_from(buf, offset)
        return cls(
            _guid(item_id),
            item_offset,
            length,
            bool(bits & METADATA_IS_USER),
            bool(bits & METADATA_IS_VIRTUAL_DISK),
            bool(bits & METADATA_IS_REQUIRED),
        )

    def pack(self) -> bytes:
        bits = (
            (METADATA_IS_USER if self.is_user else 0)
            | (METADATA_IS_VIRTUAL_DISK if self.is_virtual_disk else 0)
            | (METADATA_IS_REQUIRED if self.is_required else 0)
        )
        return self.STRUCT.pack(self.item_id.bytes_le, self.offset, self.length, bits)


class MetadataTable(FrozenRecord):
    """The metadata table at the start of the metadata region (MS-VHDX §2.6.1.1)."""

    STRUCT = struct.Struct("<8s2xH20x")
    SIZE = METADATA_TABLE_SIZE

    _fields = ("entries",)
    __slots__ = _fields
    entries: tuple[MetadataTableEntry, ...]

    def __init__(self, entries: tuple[MetadataTableEntry, ...] = ()) -> None:
        self._fill(entries)

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> MetadataTable:
        _need(buf, cls.SIZE, "metadata table")
        sig, count = cls.STRUCT.unpack_from(buf)
        if sig != METADATA_SIGNATURE:
            raise CorruptImageError("Invalid VHDX metadata table signature")
        if count > METADATA_MAX_ENTRIES:
            raise CorruptImageError(f"VHDX metadata table has too many entries ({count})")
        size = MetadataTableEntry.STRUCT.size
        return cls(tuple(MetadataTableEntry.parse(buf, cls.STRUCT.size + i * size) for i in range(count)))

    def pack(self) -> bytes:
        buf = bytearray(self.SIZE)
        self.STRUCT.pack_into(buf, 0, METADATA_SIGNATURE, len(self.entries))
        pos = self.STRUCT.size
        for entry in self.entries:
            raw = entry.pack()
            buf[pos : pos + len(raw)] = raw
            pos += len(raw)
        return bytes(buf)


class FileParameters(FrozenRecord):
    """The file parameters metadata item (MS-VHDX §2.6.2.1)."""

    STRUCT = struct.Struct("<II")

    _fields = ("block_size", "leave_blocks_allocated", "has_parent")
    __slots__ = _fields
    block_size: int
    leave_blocks_allocated: bool
    has_parent: bool

    def __init__(
        self, block_size: int, leave_blocks_allocated: bool = False, has_parent: bool = False
    ) -> None:
        self._fill(block_size, leave_blocks_allocated, has_parent)

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> FileParameters:
        _need(buf, cls.STRUCT.size, "file parameters")
        block_size, bits = cls.STRUCT.unpack_from(buf)
        return cls(block_size, bool(bits & PARAMS_LEAVE_BLOCKS_ALLOCATED), bool(bits & PARAMS_HAS_PARENT))

    def pack(self) -> bytes:
        bits = (PARAMS_LEAVE_BLOCKS_ALLOCATED if self.leave_blocks_allocated else 0) | (
            PARAMS_HAS_PARENT if self.has_parent else 0
        )
        return self.STRUCT.pack(self.block_size, bits)


class ParentLocator(FrozenRecord):
    """The parent locator metadata item (MS-VHDX §2.6.2.6): a type GUID and UTF-16 key/value pairs.

    Key and value offsets are relative to the start of the item.
    """

    STRUCT = struct.Struct("<16s2xH")
    ENTRY = struct.Struct("<IIHH")

    _fields = ("locator_type", "entries")
    __slots__ = _fields
    locator_type: uuid.UUID
    entries: tuple[tuple[str, str], ...]

    def __init__(self, locator_type: uuid.UUID, entries: tuple[tuple[str, str], ...] = ()) -> None:
        self._fill(locator_type, entries)

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> ParentLocator:
        _need(buf, cls.STRUCT.size, "parent locator")
        locator_type, count = cls.STRUCT.unpack_from(buf)
        _need(buf, cls.STRUCT.size + count * cls.ENTRY.size, "parent locator")
        entries = []
        for i in range(count):
            key_off, value_off, key_len, value_len = cls.ENTRY.unpack_from(
                buf, cls.STRUCT.size + i * cls.ENTRY.size
            )
            entries.append((_utf16(buf, key_off, key_len), _utf16(buf, value_off, value_len)))
        return cls(_guid(locator_type), tuple(entries))

    def pack(self) -> bytes:
        head = bytearray(self.STRUCT.pack(self.locator_type.bytes_le, len(self.entries)))
        strings = bytearray()
        base = len(head) + len(self.entries) * self.ENTRY.size
        for key, value in self.entries:
            raw_key, raw_value = key.encode("utf-16-le"), value.encode("utf-16-le")
            key_off = base + len(strings)
            strings += raw_key
            value_off = base + len(strings)
            strings += raw_value
            head += self.ENTRY.pack(key_off, value_off, len(raw_key), len(raw_value))
        return bytes(head + strings)


def _utf16(buf: bytes | bytearray | memoryview, offset: int, length: int) -> str:
    if offset + length > len(buf):
        raise CorruptImageError("VHDX parent locator entry points outside the item")
    return bytes(buf[offset : offset + length]).decode("utf-16-le", errors="replace")
