"""CRC-32C over a structure with its checksum field taken as zero (MS-VHDX §2.2.2, §2.2.3, §2.3.1.1).

One pair of functions serves headers, region tables and log entries, so the field-zeroing rule lives
in exactly one place.
"""

from __future__ import annotations

import struct

import crc32c

__all__ = ["compute_checksum", "stamp_checksum", "verify_checksum"]

_CHECKSUM_FIELD = struct.Struct("<I")
_ZERO_FIELD = bytes(_CHECKSUM_FIELD.size)


def compute_checksum(buf: bytes | bytearray | memoryview, crc_offset: int) -> int:
    """CRC-32C of *buf* with the 4-byte little-endian field at *crc_offset* counted as zeros."""
    view = memoryview(buf).cast("B")
    end = crc_offset + _CHECKSUM_FIELD.size
    crc = crc32c.crc32c(view[:crc_offset])
    crc = crc32c.crc32c(_ZERO_FIELD, crc)
    return crc32c.crc32c(view[end:], crc)


def verify_checksum(buf: bytes | bytearray | memoryview, crc_offset: int) -> bool:
    """True when the field at *crc_offset* holds the CRC-32C of *buf* (field zeroed)."""
    if len(buf) < crc_offset + _CHECKSUM_FIELD.size:
        return False
    (stored,) = _CHECKSUM_FIELD.unpack_from(buf, crc_offset)
    return stored == compute_checksum(buf, crc_offset)


def stamp_checksum(buf: bytearray, crc_offset: int) -> None:
    """Write the CRC-32C of *buf* into its field at *crc_offset*."""
    _CHECKSUM_FIELD.pack_into(buf, crc_offset, compute_checksum(buf, crc_offset))
