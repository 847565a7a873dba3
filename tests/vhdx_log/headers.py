"""Test helpers: the few VHDX header fields the log tests need (MS-VHDX §2.2.2).

The core's ``structs.Header`` is the library's parser; these helpers read the spec layout
directly so the log tests depend only on the log module and on the spec.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from blockfmt_vhdx.checksum import stamp_checksum, verify_checksum

HEADER_OFFSETS = (64 * 1024, 128 * 1024)
HEADER_SIZE = 4096
_HEADER = struct.Struct("<4sIQ16s16s16sHHIQ")


@dataclass(frozen=True)
class HeaderFields:
    """The current header's log fields."""

    offset: int
    sequence_number: int
    log_guid: uuid.UUID
    log_length: int
    log_offset: int


def current_header(path: Path) -> HeaderFields:
    """The valid header with the highest sequence number."""
    best: HeaderFields | None = None
    with open(path, "rb") as f:
        for offset in HEADER_OFFSETS:
            f.seek(offset)
            buf = f.read(HEADER_SIZE)
            sig, _crc, seq, _fw, _dw, log_guid, _lv, _v, log_length, log_offset = _HEADER.unpack_from(buf)
            if sig != b"head" or not verify_checksum(buf, 4):
                continue
            if best is None or seq > best.sequence_number:
                best = HeaderFields(offset, seq, uuid.UUID(bytes_le=log_guid), log_length, log_offset)
    assert best is not None, f"{path} has no valid VHDX header"
    return best


def set_log_guid(path: Path, guid: uuid.UUID | None) -> None:
    """Write *guid* into both headers the way the core does (inactive first, sequence up)."""
    current = current_header(path)
    with open(path, "r+b") as f:
        seq = current.sequence_number
        for offset in sorted(HEADER_OFFSETS, key=lambda o: o == current.offset):
            f.seek(current.offset)
            buf = bytearray(f.read(HEADER_SIZE))
            seq += 1
            struct.pack_into("<Q", buf, 8, seq)
            buf[48:64] = (guid or uuid.UUID(int=0)).bytes_le
            stamp_checksum(buf, 4)
            f.seek(offset)
            f.write(buf)
