"""Choosing the current header and updating both copies (MS-VHDX §2.2.2, §2.2.2.1).

A header update writes the non-current copy with the next sequence number, flushes, and then does
the same for the other copy, so a power cut at any point leaves one valid header with the newest
state or the previous one. Both copies end up valid and identical apart from the sequence number.
"""

from __future__ import annotations

import uuid

from blockfmt.errors import CorruptImageError
from blockfmt.fileio import ImageFile

from .constants import HEADER_OFFSETS, HEADER_SIZE
from .structs import Header

#: SequenceNumber is a UINT64 (MS-VHDX §2.2.2); an update needs room for one increment per copy
MAX_SEQUENCE_NUMBER = (1 << 64) - 1

__all__ = ["HeaderPair", "read_headers", "write_headers"]

_UNSET = object()


class HeaderPair:
    """The two header slots of an open file and which of them is current.

    :ivar current: the valid header with the highest sequence number.
    :ivar current_index: 0 for the copy at 64 KiB, 1 for the copy at 128 KiB.
    """

    def __init__(self, current: Header, current_index: int) -> None:
        self.current = current
        self.current_index = current_index

    def update(
        self,
        file: ImageFile,
        *,
        file_write_guid: uuid.UUID | None = None,
        data_write_guid: uuid.UUID | None = None,
        log_guid: uuid.UUID | object | None = _UNSET,
    ) -> Header:
        """Write both copies with the given fields changed, each one flushed (§2.2.2.1).

        :param log_guid: the new LogGuid; ``None`` clears it to zero; leave it out to keep it.
        :returns: the new current header.
        :raises CorruptImageError: when the sequence number cannot grow any more (nothing is written).
        """
        if self.current.sequence_number > MAX_SEQUENCE_NUMBER - len(HEADER_OFFSETS):
            raise CorruptImageError(
                f"VHDX header sequence number {self.current.sequence_number} cannot be incremented"
            )
        changes: dict[str, object] = {}
        if file_write_guid is not None:
            changes["file_write_guid"] = file_write_guid
        if data_write_guid is not None:
            changes["data_write_guid"] = data_write_guid
        if log_guid is not _UNSET:
            changes["log_guid"] = log_guid if isinstance(log_guid, uuid.UUID) else uuid.UUID(int=0)
        for _ in HEADER_OFFSETS:
            target = 1 - self.current_index
            header = self.current.replace(sequence_number=self.current.sequence_number + 1, **changes)
            file.pwrite(header.pack(), HEADER_OFFSETS[target])
            file.flush()
            self.current, self.current_index = header, target
        return self.current


def write_headers(file: ImageFile, header: Header) -> HeaderPair:
    """Write *header* into both slots of a new file (sequence numbers n and n+1); no flush."""
    file.pwrite(header.pack(), HEADER_OFFSETS[0])
    second = header.replace(sequence_number=header.sequence_number + 1)
    file.pwrite(second.pack(), HEADER_OFFSETS[1])
    return HeaderPair(second, 1)


def read_headers(file: ImageFile) -> HeaderPair:
    """Read both headers and pick the current one (§2.2.2.1).

    One damaged copy is survivable; equal sequence numbers are only accepted when both copies are
    identical (Disk2VHD writes them so, and QEMU accepts it).

    :raises CorruptImageError: ``No valid VHDX header found`` (QEMU's text) otherwise.
    """
    valid: list[tuple[Header, int, bytes]] = []
    for index, offset in enumerate(HEADER_OFFSETS):
        raw = file.pread(HEADER_SIZE, offset)
        try:
            valid.append((Header.parse(raw), index, raw[: Header.STRUCT.size]))
        except CorruptImageError:
            continue
    if not valid:
        raise CorruptImageError("No valid VHDX header found")
    if len(valid) == 2 and valid[0][0].sequence_number == valid[1][0].sequence_number:
        if valid[0][2] != valid[1][2]:
            raise CorruptImageError("No valid VHDX header found")
        return HeaderPair(valid[0][0], 0)
    best = max(valid, key=lambda item: item[0].sequence_number)
    return HeaderPair(best[0], best[1])
