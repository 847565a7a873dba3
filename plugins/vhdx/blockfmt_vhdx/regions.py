"""The region table and the map of every fixed object in the file (MS-VHDX §2.2.3).

Region tables are read from both copies (the first valid one wins). Every object's extent (header
section, log, BAT, metadata) is validated against alignment, the other objects and the file size,
so later reads through these offsets can neither overlap each other nor leave the file.
"""

from __future__ import annotations

from blockfmt.errors import CorruptImageError, UnsupportedFeatureError
from blockfmt.fileio import ImageFile
from blockfmt.records import FrozenRecord

from .constants import (
    BAT_REGION_GUID,
    HEADER_SECTION_SIZE,
    LOG_ALIGNMENT,
    LOG_VERSION,
    METADATA_REGION_GUID,
    METADATA_TABLE_SIZE,
    OBJECT_ALIGNMENT,
    REGION_TABLE_OFFSETS,
)
from .structs import Header, RegionTable, RegionTableEntry

__all__ = ["FileRegions", "Span", "check_log_fields", "check_log_region", "read_regions"]


class Span(FrozenRecord):
    """A named extent ``[start, end)`` of the image file."""

    _fields = ("name", "start", "end")
    __slots__ = _fields
    name: str
    start: int
    end: int

    def __init__(self, name: str, start: int, end: int) -> None:
        self._fill(name, start, end)

    def overlaps(self, start: int, end: int) -> bool:
        return start < self.end and self.start < end


class FileRegions(FrozenRecord):
    """The BAT and metadata regions and every fixed span of the file, for overlap checks."""

    _fields = ("bat", "metadata", "spans", "table_bytes", "damaged_tables")
    __slots__ = _fields
    bat: RegionTableEntry
    metadata: RegionTableEntry
    spans: tuple[Span, ...]
    #: the valid region table as stored, and the offsets of copies that are not valid (QEMU reads
    #: only the first copy, so ``check -r all`` rewrites a damaged copy from the valid one)
    table_bytes: bytes
    damaged_tables: tuple[int, ...]

    def __init__(
        self,
        bat: RegionTableEntry,
        metadata: RegionTableEntry,
        spans: tuple[Span, ...],
        table_bytes: bytes = b"",
        damaged_tables: tuple[int, ...] = (),
    ) -> None:
        self._fill(bat, metadata, spans, table_bytes, damaged_tables)

    def overlapping(self, start: int, end: int) -> Span | None:
        """The first fixed span that ``[start, end)`` overlaps, or None."""
        for span in self.spans:
            if span.overlaps(start, end):
                return span
        return None


def check_log_region(log_offset: int, log_length: int) -> None:
    """The log lies after the header section, offset and length multiples of 1 MiB (MS-VHDX §2.2.2).

    The one check of the log's place: the open path, the log scanner and the log writer use it.
    A length of zero is a log-less image (QEMU ignores the log then).

    :raises CorruptImageError: when the log is misplaced.
    """
    if log_offset < HEADER_SECTION_SIZE or log_offset % LOG_ALIGNMENT or log_length % LOG_ALIGNMENT:
        raise CorruptImageError(
            f"VHDX log at offset {log_offset} with length {log_length} is not 1 MB aligned"
        )


def check_log_fields(header: Header, file_size: int, *, writable: bool) -> None:
    """Validate the log location of the current header, as QEMU does before looking at the log.

    The log must lie inside the file when it holds entries, and also whenever the image is open for
    writing, since every metadata change will be written there (QEMU does not check this, and a
    hostile LogOffset of 2**63 would make the first allocation extend the file to 8 EiB).

    :raises CorruptImageError: when the log is misplaced or of an unknown version (§2.2.2).
    """
    check_log_region(header.log_offset, header.log_length)
    if header.log_version != LOG_VERSION:
        raise CorruptImageError(f"VHDX log version {header.log_version} is not supported")
    if (header.has_log or writable) and header.log_offset + header.log_length > file_size:
        raise CorruptImageError("VHDX log lies beyond the end of the file")


def _read_table(file: ImageFile) -> tuple[RegionTable, bytes, tuple[int, ...]]:
    """The first valid copy, its bytes, and the offsets of the copies that are not valid."""
    first_error: CorruptImageError | None = None
    valid: tuple[RegionTable, bytes] | None = None
    damaged: list[int] = []
    for offset in REGION_TABLE_OFFSETS:
        raw = file.pread(RegionTable.SIZE, offset)
        try:
            table = RegionTable.parse(raw)
        except CorruptImageError as err:
            first_error = first_error or err
            damaged.append(offset)
            continue
        if valid is None:
            valid = (table, raw)
    if valid is None:
        assert first_error is not None
        raise first_error
    return valid[0], valid[1], tuple(damaged)


def read_regions(file: ImageFile, header: Header, file_size: int) -> FileRegions:
    """Read the region table and validate every region (§2.2.3.2).

    :raises CorruptImageError: for a missing, duplicate, misaligned, overlapping or out-of-file
        BAT or metadata region.
    :raises UnsupportedFeatureError: for an unknown region marked required.
    """
    table, table_bytes, damaged_tables = _read_table(file)
    spans = [Span("header section", 0, HEADER_SECTION_SIZE)]
    if header.log_length:
        spans.append(Span("log", header.log_offset, header.log_offset + header.log_length))
    found: dict[object, RegionTableEntry] = {}
    for entry in table.entries:
        name = {BAT_REGION_GUID: "BAT", METADATA_REGION_GUID: "metadata"}.get(entry.guid)
        if name is None:
            if entry.required:
                raise UnsupportedFeatureError(f"VHDX region {entry.guid} is required but unknown")
            continue
        if entry.guid in found:
            raise CorruptImageError(f"VHDX region table lists the {name} region twice")
        if entry.file_offset % OBJECT_ALIGNMENT or entry.length % OBJECT_ALIGNMENT or not entry.length:
            raise CorruptImageError(f"VHDX {name} region is not aligned to 1 MiB")
        end = entry.file_offset + entry.length
        for span in spans:
            if span.overlaps(entry.file_offset, end):
                raise CorruptImageError(
                    f"VHDX region {entry.file_offset}-{end} overlaps with region {span.start}-{span.end}"
                )
        found[entry.guid] = entry
        spans.append(Span(f"{name} region", entry.file_offset, end))
    for guid, name in ((BAT_REGION_GUID, "BAT"), (METADATA_REGION_GUID, "metadata")):
        if guid not in found:
            raise CorruptImageError(f"VHDX region table has no {name} region")
    metadata = found[METADATA_REGION_GUID]
    if metadata.length < METADATA_TABLE_SIZE or metadata.file_offset + METADATA_TABLE_SIZE > file_size:
        raise CorruptImageError("VHDX metadata region lies beyond the end of the file")
    return FileRegions(found[BAT_REGION_GUID], metadata, tuple(spans), table_bytes, damaged_tables)
