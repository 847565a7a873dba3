"""CRC-32C over a structure with its checksum field taken as zero (MS-VHDX §2.2.2, §2.2.3, §2.3.1.1).

One pair of functions serves headers, region tables and log entries, so the field-zeroing rule lives
in exactly one place.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import struct
from collections.abc import Callable

CrcFunction = Callable[..., int]


def _load_crc32c() -> CrcFunction:
    """The ``crc32c`` package's C function, loaded without running the package's ``__init__``.

    That ``__init__`` imports :mod:`importlib.metadata` to look up its own version and
    :mod:`argparse` for its command line, about 40 ms of every blockfmt process that opens a VHDX
    (a whole ``qemu-img info`` takes 7 ms). Any surprise in the package's layout falls back to
    the plain import.
    """
    package = importlib.util.find_spec("crc32c")
    for directory in (package.submodule_search_locations or ()) if package else ():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(directory, "_crc32c" + suffix)
            if not os.path.exists(path):
                continue
            loader = importlib.machinery.ExtensionFileLoader("crc32c._crc32c", path)
            spec = importlib.util.spec_from_loader("crc32c._crc32c", loader)
            try:
                module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
                loader.exec_module(module)
                return module.crc32c  # type: ignore[no-any-return]
            except (ImportError, AttributeError):
                break
    from crc32c import crc32c as imported

    return imported


crc32c = _load_crc32c()

__all__ = ["compute_checksum", "continue_checksum", "stamp_checksum", "verify_checksum"]

_CHECKSUM_FIELD = struct.Struct("<I")
_ZERO_FIELD = bytes(_CHECKSUM_FIELD.size)


def compute_checksum(buf: bytes | bytearray | memoryview, crc_offset: int) -> int:
    """CRC-32C of *buf* with the 4-byte little-endian field at *crc_offset* counted as zeros."""
    view = memoryview(buf).cast("B")
    end = crc_offset + _CHECKSUM_FIELD.size
    crc = crc32c(view[:crc_offset])
    crc = crc32c(_ZERO_FIELD, crc)
    return crc32c(view[end:], crc)


def continue_checksum(crc: int, more: bytes | bytearray | memoryview) -> int:
    """The CRC-32C of a structure read in pieces: *crc* so far, extended by the next piece *more*."""
    return crc32c(more, crc)


def verify_checksum(buf: bytes | bytearray | memoryview, crc_offset: int) -> bool:
    """True when the field at *crc_offset* holds the CRC-32C of *buf* (field zeroed)."""
    if len(buf) < crc_offset + _CHECKSUM_FIELD.size:
        return False
    (stored,) = _CHECKSUM_FIELD.unpack_from(buf, crc_offset)
    return stored == compute_checksum(buf, crc_offset)


def stamp_checksum(buf: bytearray, crc_offset: int) -> None:
    """Write the CRC-32C of *buf* into its field at *crc_offset*."""
    _CHECKSUM_FIELD.pack_into(buf, crc_offset, compute_checksum(buf, crc_offset))
