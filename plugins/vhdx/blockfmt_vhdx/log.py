"""The VHDX metadata log: find the active sequence, replay it, write through it (MS-VHDX §2.3).

Every metadata update of a VHDX file (BAT, metadata region) first goes to the log, a circular
buffer of 4 KiB sectors, and only then to its place in the file; a header's LogGuid says the log
holds entries that may not have reached their place. After a crash the *active sequence* is
replayed: the valid entries, with the header's LogGuid, ending at the entry with the highest
sequence number and starting at that entry's Tail (MS-VHDX §2.3.3).

- :func:`find_log_sequence` scans the log and returns that sequence (or None).
- :func:`replay_log` writes it into the file; :class:`LogOverlayFile` shows the file as it
  would be after replay without touching it (read-only opens).
- :class:`LogWriter` makes metadata updates durable through the log, as QEMU and Hyper-V do.

Clearing the header's LogGuid after a replay is the caller's job (it owns the headers).
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from blockfmt.errors import CorruptImageError, ReadOnlyError
from blockfmt.fileio import ImageFile

from .checksum import compute_checksum, continue_checksum, stamp_checksum
from .constants import (
    CHECKSUM_OFFSET,
    DESCRIPTOR_SIZE,
    FILE_SIZE_ALIGNMENT,
    HEADERS_END,
    LOG_ENTRY_SIGNATURE,
    LOG_SECTOR_SIZE,
    ZERO_GUID,
    MiB,
)
from .log_structs import (
    DataDescriptor,
    DataSector,
    LogEntryHeader,
    ZeroDescriptor,
    descriptor_sectors,
    parse_descriptor,
)
from .regions import check_log_region

__all__ = [
    "LogEntry",
    "LogOverlayFile",
    "LogSequence",
    "LogWrite",
    "LogWriter",
    "find_log_sequence",
    "replay_log",
]

#: the largest file offset a POSIX file can reach
MAX_FILE_OFFSET = (1 << 63) - 1
#: how far past the current end of file a log may ask replay to extend it. A legitimate LastFileOffset
#: runs ahead of the file only by blocks a crash left unextended after the entry was written (QEMU's
#: writer and ours extend and flush before logging, so for them it never does); 16 blocks of the
#: 256 MiB maximum (MS-VHDX §2.6.2.1) is far beyond that. More is a hostile log, and honouring it
#: would make replay allocate terabytes wherever the file system is not sparse.
MAX_REPLAY_GROWTH = 16 * 256 * MiB
#: bytes read per I/O while scanning or verifying the log
_CHUNK_SIZE = MiB
#: scanning work allowed, in multiples of the log length, before a log counts as hostile
_WORK_FACTOR = 16
_MIN_WORK = 64 * MiB
_ZERO_CHUNK = bytes(MiB)


@dataclass(frozen=True, slots=True)
class LogWrite:
    """One change a log entry makes to the file: *data* at *file_offset*, or zeros when data is None."""

    file_offset: int
    length: int
    data: bytes | None

    @property
    def end(self) -> int:
        return self.file_offset + self.length


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A validated log entry: where it sits in the log and what it writes, in descriptor order."""

    position: int
    header: LogEntryHeader
    writes: tuple[LogWrite, ...]


@dataclass(frozen=True, slots=True)
class LogSequence:
    """The active sequence of a log (MS-VHDX §2.3.3), oldest entry first.

    Memory is bounded by the log length: the entries of one sequence never overlap in the log.
    """

    log_offset: int
    log_length: int
    log_guid: uuid.UUID
    entries: tuple[LogEntry, ...]

    @property
    def head(self) -> LogEntry:
        """The newest entry."""
        return self.entries[-1]

    @property
    def flushed_file_offset(self) -> int:
        """The file size the entries promise was durable; a shorter file was truncated."""
        return max(entry.header.flushed_file_offset for entry in self.entries)

    @property
    def last_file_offset(self) -> int:
        """The file size every allocated structure fits into; replay grows the file to it."""
        return max(entry.header.last_file_offset for entry in self.entries)

    def writes(self) -> Iterator[LogWrite]:
        """Every change in replay order (later ones win)."""
        for entry in self.entries:
            yield from entry.writes

    def replayed_size(self, file_size: int) -> int:
        """The file size after replay, given the size before it."""
        grown = -(-self.last_file_offset // FILE_SIZE_ALIGNMENT) * FILE_SIZE_ALIGNMENT
        return max([file_size, grown, *(write.end for write in self.writes())])


# Section: finding the active sequence


def find_log_sequence(
    file: ImageFile, log_offset: int, log_length: int, log_guid: uuid.UUID
) -> LogSequence | None:
    """Return the log's active sequence, or None when there is nothing to replay (MS-VHDX §2.3.3).

    An entry is valid when its signature, fields, CRC-32C, LogGuid, descriptors and data sectors
    (signature and both halves of the sequence number) are; invalid entries are ignored, as the
    spec says. The active sequence ends at the valid entry with the highest sequence number whose
    Tail leads, through entries with consecutive sequence numbers laid end to end in the circular
    log, back to it. When the newest entry has no such sequence, the next newest is tried.

    Work is bounded by a multiple of the log length; memory by the log length.

    :param log_guid: the current header's LogGuid; the nil GUID means the log is empty.
    :raises CorruptImageError: when the log region is misplaced, when the active sequence writes
        outside the file's metadata area (headers, the log itself, beyond the file), or when the
        log holds so many overlapping entries that scanning it would not be bounded.
    """
    if log_guid == ZERO_GUID or log_length == 0:
        return None
    check_log_region(log_offset, log_length)
    scan = _LogScan(file, log_offset, log_length, log_guid)
    sequence = scan.active_sequence()
    if sequence is not None:
        _check_ranges(file, sequence)
    return sequence


class _LogScan:
    """One search of a log for its active sequence."""

    def __init__(self, file: ImageFile, log_offset: int, log_length: int, log_guid: uuid.UUID) -> None:
        self.file = file
        self.log_offset = log_offset
        self.log_length = log_length
        self.log_guid = log_guid
        self.work_left = max(_MIN_WORK, _WORK_FACTOR * log_length)
        self.invalid: set[int] = set()

    def active_sequence(self) -> LogSequence | None:
        candidates = self._candidates()
        for position, head in sorted(candidates.items(), key=lambda item: -item[1].sequence_number):
            chain = self._chain(candidates, position, head)
            if chain is None:
                continue
            entries = []
            for pos, header in chain:
                entry = self._read_entry(pos, header)
                if entry is None:
                    break
                entries.append(entry)
            else:
                return LogSequence(self.log_offset, self.log_length, self.log_guid, tuple(entries))
        return None

    def _spend(self, amount: int) -> None:
        self.work_left -= amount
        if self.work_left < 0:
            raise CorruptImageError("VHDX log is corrupt: too many overlapping log entries")

    def _candidates(self) -> dict[int, LogEntryHeader]:
        """Headers at each log sector whose own fields and LogGuid are valid, by log position."""
        found: dict[int, LogEntryHeader] = {}
        guid = self.log_guid.bytes_le
        guid_at = LogEntryHeader.STRUCT.size - 32  # LogGuid is followed by two 8-byte offsets
        for chunk_pos, chunk in self._read_log(0, self.log_length):
            start = chunk.find(LOG_ENTRY_SIGNATURE)
            while start != -1:
                if start % LOG_SECTOR_SIZE == 0 and chunk[start + guid_at : start + guid_at + 16] == guid:
                    try:
                        header = LogEntryHeader.parse(memoryview(chunk)[start : start + LogEntryHeader.SIZE])
                    except CorruptImageError:
                        header = None
                    if header is not None and header.entry_length <= self.log_length:
                        if header.tail < self.log_length:
                            found[chunk_pos + start] = header
                start = chunk.find(LOG_ENTRY_SIGNATURE, start + 1)
        return found

    def _chain(
        self, candidates: dict[int, LogEntryHeader], head_position: int, head: LogEntryHeader
    ) -> list[tuple[int, LogEntryHeader]] | None:
        """The entries from *head*'s Tail to *head*, if they are laid end to end with consecutive numbers."""
        chain: list[tuple[int, LogEntryHeader]] = []
        position = head.tail
        total = 0
        while True:
            header = candidates.get(position)
            self._spend(LOG_SECTOR_SIZE)
            if header is None or header.sequence_number > head.sequence_number:
                return None
            if chain and header.sequence_number != chain[-1][1].sequence_number + 1:
                return None
            total += header.entry_length
            if total > self.log_length:
                return None
            chain.append((position, header))
            if position == head_position:
                return chain
            position = (position + header.entry_length) % self.log_length

    def _read_log(self, position: int, length: int) -> Iterator[tuple[int, bytearray]]:
        """Yield (log position, bytes) chunks of the circular log from *position* on, wrapping."""
        done = 0
        while done < length:
            at = (position + done) % self.log_length
            size = min(_CHUNK_SIZE, length - done, self.log_length - at)
            buf = bytearray(size)
            self.file.preadinto(buf, self.log_offset + at)
            yield at, buf
            done += size

    def _read_entry(self, position: int, header: LogEntryHeader) -> LogEntry | None:
        """Verify the entry at *position* in full; None when it is invalid (MS-VHDX §2.3.1)."""
        if position in self.invalid:
            return None
        self._spend(header.entry_length)
        entry = self._parse_entry(position, header)
        if entry is None:
            self.invalid.add(position)
        return entry

    def _parse_entry(self, position: int, header: LogEntryHeader) -> LogEntry | None:
        table_length = descriptor_sectors(header.descriptor_count) * LOG_SECTOR_SIZE
        crc: int | None = None
        table = bytearray()
        descriptors: list[ZeroDescriptor | DataDescriptor] = []
        data_descriptors: list[DataDescriptor] = []
        writes: list[LogWrite] = []
        done = 0
        for _, chunk in self._read_log(position, header.entry_length):
            if crc is None:
                crc = compute_checksum(chunk, CHECKSUM_OFFSET)
            else:
                crc = continue_checksum(crc, chunk)
            view = memoryview(chunk)
            if done < table_length:
                table += view[: table_length - done]
                if len(table) == table_length:
                    parsed = self._parse_descriptors(table, header)
                    if parsed is None:
                        return None
                    descriptors = parsed
                    data_descriptors = [d for d in descriptors if isinstance(d, DataDescriptor)]
                    if table_length + len(data_descriptors) * LOG_SECTOR_SIZE > header.entry_length:
                        return None
            first_data = max(0, table_length - done)
            for at in range(first_data, len(chunk), LOG_SECTOR_SIZE):
                index = (done + at - table_length) // LOG_SECTOR_SIZE
                if index >= len(data_descriptors):
                    break
                try:
                    sector = DataSector.parse(view[at : at + LOG_SECTOR_SIZE])
                except CorruptImageError:
                    return None
                if sector.sequence_number != header.sequence_number:
                    return None
                writes.append(self._data_write(data_descriptors[index], sector))
            done += len(chunk)
        if crc != header.checksum:
            return None
        return LogEntry(position, header, tuple(self._in_order(descriptors, writes)))

    @staticmethod
    def _parse_descriptors(
        table: bytearray, header: LogEntryHeader
    ) -> list[ZeroDescriptor | DataDescriptor] | None:
        descriptors = []
        for index in range(header.descriptor_count):
            at = LogEntryHeader.SIZE + index * DESCRIPTOR_SIZE
            try:
                descriptor = parse_descriptor(memoryview(table)[at : at + DESCRIPTOR_SIZE])
            except CorruptImageError:
                return None
            if descriptor.sequence_number != header.sequence_number:
                return None
            descriptors.append(descriptor)
        return descriptors

    @staticmethod
    def _data_write(descriptor: DataDescriptor, sector: DataSector) -> LogWrite:
        return LogWrite(descriptor.file_offset, LOG_SECTOR_SIZE, descriptor.sector(sector))

    @staticmethod
    def _in_order(
        descriptors: list[ZeroDescriptor | DataDescriptor], data_writes: list[LogWrite]
    ) -> Iterator[LogWrite]:
        """Interleave zero and data writes in descriptor order, which is the order of replay."""
        data = iter(data_writes)
        for descriptor in descriptors:
            if isinstance(descriptor, DataDescriptor):
                yield next(data)
            else:
                yield LogWrite(descriptor.file_offset, descriptor.zero_length, None)


def _check_ranges(file: ImageFile, sequence: LogSequence) -> None:
    """Reject an active sequence that writes where no log entry may (headers, the log, beyond the file)."""
    file_size = file.size()
    log_end = sequence.log_offset + sequence.log_length
    for entry in sequence.entries:
        header = entry.header
        if (
            header.last_file_offset > MAX_FILE_OFFSET - FILE_SIZE_ALIGNMENT
            or header.last_file_offset > file_size + MAX_REPLAY_GROWTH
        ):
            raise CorruptImageError(
                f"VHDX log entry {header.sequence_number} has an invalid "
                f"LastFileOffset {header.last_file_offset}"
            )
        limit = max(file_size, header.last_file_offset)
        for write in entry.writes:
            if (
                write.file_offset < HEADERS_END
                or write.end > limit
                or (write.file_offset < log_end and sequence.log_offset < write.end)
            ):
                raise CorruptImageError(
                    f"VHDX log entry {header.sequence_number} writes {write.length} bytes at offset "
                    f"{write.file_offset}, outside the file's metadata area"
                )


def _check_not_truncated(file: ImageFile, sequence: LogSequence) -> None:
    """A file shorter than FlushedFileOffset lost data the log relies on (MS-VHDX §2.3.3)."""
    size = file.size()
    if sequence.flushed_file_offset > size:
        raise CorruptImageError(
            f"VHDX log expects a file of at least {sequence.flushed_file_offset} bytes, "
            f"but the file has {size}: it was truncated"
        )


# Section: replay


def replay_log(file: ImageFile, sequence: LogSequence) -> None:
    """Apply *sequence* to *file*, grow the file to LastFileOffset, and flush (MS-VHDX §2.3.3).

    Replay only rewrites the same bytes, so an interrupted replay is finished by running it again;
    the caller clears the header's LogGuid once this returns.

    :raises CorruptImageError: when the file is shorter than the log's FlushedFileOffset.
    :raises BlockIOError: when the file cannot be written.
    """
    _check_not_truncated(file, sequence)
    target = sequence.replayed_size(file.size())
    for write in _coalesce(sequence.writes()):
        if write.data is None:
            _write_zeros(file, write.file_offset, write.length)
        else:
            file.pwrite(write.data, write.file_offset)
    if file.size() < target:
        file.truncate(target)
    file.flush()


def _coalesce(writes: Iterator[LogWrite]) -> Iterator[LogWrite]:
    """Merge runs of data writes that follow each other in the file into one write each."""
    run: list[LogWrite] = []
    for write in writes:
        if run and (write.data is None or run[-1].data is None or write.file_offset != run[-1].end):
            yield _merged(run)
            run = []
        run.append(write)
    if run:
        yield _merged(run)


def _merged(run: list[LogWrite]) -> LogWrite:
    if len(run) == 1:
        return run[0]
    data = b"".join(write.data or b"" for write in run)
    return LogWrite(run[0].file_offset, len(data), data)


def _write_zeros(file: ImageFile, offset: int, length: int) -> None:
    end = offset + length
    while offset < end:
        size = min(len(_ZERO_CHUNK), end - offset)
        file.pwrite(memoryview(_ZERO_CHUNK)[:size], offset)
        offset += size


# Section: in-memory replay


@dataclass(frozen=True, slots=True)
class _Piece:
    start: int
    end: int
    data: memoryview | None

    def cut(self, start: int, end: int) -> _Piece:
        data = None if self.data is None else self.data[start - self.start : end - self.start]
        return _Piece(start, end, data)


class LogOverlayFile(ImageFile):
    """A read-only view of *file* as it will be after *sequence* is replayed; the file stays untouched.

    Read-only opens of a dirty image use this (opt-in) instead of refusing: reads return
    post-replay bytes, :meth:`size` the post-replay size. Ownership of *file* stays with the caller.

    :raises CorruptImageError: when the file is shorter than the log's FlushedFileOffset.
    """

    def __init__(self, file: ImageFile, sequence: LogSequence) -> None:
        _check_not_truncated(file, sequence)
        self.file = file
        self.name = file.name
        self.read_only = True
        self._starts: list[int] = []
        self._pieces: list[_Piece] = []
        for write in sequence.writes():
            data = None if write.data is None else memoryview(write.data)
            self._put(_Piece(write.file_offset, write.end, data))
        self._size = sequence.replayed_size(file.size())

    def _put(self, piece: _Piece) -> None:
        """Lay *piece* over the pieces already there, cutting the ones it overlaps."""
        lo = bisect.bisect_right(self._starts, piece.start) - 1
        if lo < 0 or self._pieces[lo].end <= piece.start:
            lo += 1
        hi = bisect.bisect_left(self._starts, piece.end)
        replacement = []
        if lo < hi and self._pieces[lo].start < piece.start:
            replacement.append(self._pieces[lo].cut(self._pieces[lo].start, piece.start))
        replacement.append(piece)
        if lo < hi and self._pieces[hi - 1].end > piece.end:
            replacement.append(self._pieces[hi - 1].cut(piece.end, self._pieces[hi - 1].end))
        self._pieces[lo:hi] = replacement
        self._starts[lo:hi] = [p.start for p in replacement]

    def preadinto(self, buf: memoryview | bytearray, offset: int) -> int:
        view = memoryview(buf).cast("B")
        end = offset + len(view)
        got = self.file.preadinto(view, offset)
        available = max(0, min(len(view), self._size - offset))
        if got < available:
            view[got:available] = bytes(available - got)
        index = max(0, bisect.bisect_right(self._starts, offset) - 1)
        for piece in self._pieces[index:]:
            if piece.start >= end:
                break
            lo, hi = max(piece.start, offset), min(piece.end, end)
            if lo >= hi:
                continue
            if piece.data is None:
                view[lo - offset : hi - offset] = bytes(hi - lo)
            else:
                view[lo - offset : hi - offset] = piece.data[lo - piece.start : hi - piece.start]
        return available

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        raise ReadOnlyError("The log of this image is replayed in memory only; it is read-only")

    def truncate(self, length: int) -> None:
        raise ReadOnlyError("The log of this image is replayed in memory only; it is read-only")

    def punch_hole(self, offset: int, length: int) -> None:
        raise ReadOnlyError("The log of this image is replayed in memory only; it is read-only")

    def size(self) -> int:
        return self._size

    def flush(self) -> None:
        """Nothing to make durable."""


# Section: writing


class LogWriter:
    """Make metadata updates crash-safe through the log, in QEMU's and Hyper-V's layout (MS-VHDX §2.3).

    Each transaction becomes one log entry (more when it does not fit): the payload is flushed, the
    entry written and flushed, then its sectors are written in place and flushed. Every entry is a
    sequence of its own (Tail = its own position), so after a crash at most the newest entry is
    replayed, and replaying an entry already applied changes nothing. The LogGuid stays set while
    the writer is in use; :meth:`close` clears it.

    Entries are at most half the log, so a new entry never overwrites the newest complete one: if
    the new one is torn, the previous one stays the active sequence and no older entry can win.

    :param set_log_guid: writes the GUID (None for the nil GUID) into the headers durably; called
        before the first entry and by :meth:`close`.
    """

    def __init__(
        self,
        file: ImageFile,
        log_offset: int,
        log_length: int,
        set_log_guid: Callable[[uuid.UUID | None], None],
    ) -> None:
        check_log_region(log_offset, log_length)
        if not log_length:
            raise CorruptImageError("VHDX image has no log to write metadata changes through")
        self.file = file
        self.log_offset = log_offset
        self.log_length = log_length
        self._set_log_guid = set_log_guid
        self._guid: uuid.UUID | None = None
        self._position = 0
        self._sequence_number = 1
        max_sectors = log_length // LOG_SECTOR_SIZE // 2
        data_sectors = max_sectors - 1
        while descriptor_sectors(data_sectors) + data_sectors > max_sectors:
            data_sectors -= 1
        self._max_data_sectors = data_sectors

    def write_transaction(self, updates: Sequence[tuple[int, bytes | bytearray | memoryview]]) -> None:
        """Write every ``(file_offset, data)`` of *updates* durably, later ones winning on overlap.

        Partial sectors are completed with the file's current bytes.

        :raises ValueError: when an update reaches into the headers or the log (a caller bug).
        :raises BlockIOError: when the file fails; what was durable before stays consistent.
        """
        sectors = self._sector_images(updates)
        if not sectors:
            return
        self.file.flush()
        if self._guid is None:
            guid = uuid.uuid4()
            self._set_log_guid(guid)
            self._guid = guid
        for first in range(0, len(sectors), self._max_data_sectors):
            self._write_entry(sectors[first : first + self._max_data_sectors])

    def close(self) -> None:
        """Mark the log empty again (the nil LogGuid), if this writer set one."""
        if self._guid is not None:
            self.file.flush()
            self._set_log_guid(None)
            self._guid = None

    def _sector_images(
        self, updates: Sequence[tuple[int, bytes | bytearray | memoryview]]
    ) -> list[tuple[int, bytearray]]:
        """The whole 4 KiB sectors the updates touch, after the updates, sorted by offset."""
        images: dict[int, bytearray] = {}
        log_end = self.log_offset + self.log_length
        for offset, data in updates:
            view = memoryview(data).cast("B")
            end = offset + len(view)
            if not view:
                continue
            if offset < HEADERS_END or (offset < log_end and self.log_offset < end):
                raise ValueError(f"update at {offset} of {len(view)} bytes reaches the headers or the log")
            first = offset - offset % LOG_SECTOR_SIZE
            for sector in range(first, end, LOG_SECTOR_SIZE):
                image = images.get(sector)
                if image is None:
                    whole = offset <= sector and sector + LOG_SECTOR_SIZE <= end
                    image = (
                        bytearray(LOG_SECTOR_SIZE)
                        if whole
                        else bytearray(self.file.pread(LOG_SECTOR_SIZE, sector))
                    )
                    images[sector] = image
                lo, hi = max(offset, sector), min(end, sector + LOG_SECTOR_SIZE)
                image[lo - sector : hi - sector] = view[lo - offset : hi - offset]
        return sorted(images.items())

    def _write_entry(self, sectors: list[tuple[int, bytearray]]) -> None:
        assert self._guid is not None
        sequence_number = self._sequence_number
        table_length = descriptor_sectors(len(sectors)) * LOG_SECTOR_SIZE
        entry_length = table_length + len(sectors) * LOG_SECTOR_SIZE
        file_size = self.file.size()
        header = LogEntryHeader(
            checksum=0,
            entry_length=entry_length,
            tail=self._position,
            sequence_number=sequence_number,
            descriptor_count=len(sectors),
            log_guid=self._guid,
            flushed_file_offset=file_size,
            last_file_offset=file_size,
        )
        entry = bytearray(entry_length)
        entry[: LogEntryHeader.SIZE] = header.pack()
        for index, (offset, image) in enumerate(sectors):
            descriptor, data_sector = DataSector.split(image, offset, sequence_number)
            at = LogEntryHeader.SIZE + index * DESCRIPTOR_SIZE
            entry[at : at + DESCRIPTOR_SIZE] = descriptor.pack()
            at = table_length + index * LOG_SECTOR_SIZE
            entry[at : at + LOG_SECTOR_SIZE] = data_sector.pack()
        stamp_checksum(entry, CHECKSUM_OFFSET)

        first = min(entry_length, self.log_length - self._position)
        self.file.pwrite(memoryview(entry)[:first], self.log_offset + self._position)
        if first < entry_length:
            self.file.pwrite(memoryview(entry)[first:], self.log_offset)
        self.file.flush()

        for offset, data in _runs(sectors):
            self.file.pwrite(data, offset)
        self.file.flush()
        self._position = (self._position + entry_length) % self.log_length
        self._sequence_number += 1


def _runs(sectors: list[tuple[int, bytearray]]) -> Iterator[tuple[int, bytes]]:
    """Join sorted sectors that follow each other in the file into single writes."""
    start = 0
    for index in range(1, len(sectors) + 1):
        if index == len(sectors) or sectors[index][0] != sectors[index - 1][0] + LOG_SECTOR_SIZE:
            yield sectors[start][0], b"".join(image for _, image in sectors[start:index])
            start = index
