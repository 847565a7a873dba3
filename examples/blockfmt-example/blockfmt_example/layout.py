"""The on-disk layout of ``example`` images: parse and serialize, no I/O.

The file starts with a 4 KiB header (magic, version, virtual size, block size, entries in the block
table), followed by the block table (one little-endian 64-bit file offset per block, 0 meaning
unallocated) padded to 4 KiB, followed by data blocks in the order they were first written.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from blockfmt import CorruptImageError, UnsupportedFeatureError

MAGIC = b"BFEXAMPL"
VERSION = 1
HEADER_SIZE = 4096
TABLE_ALIGNMENT = 4096
DEFAULT_BLOCK_SIZE = 64 * 1024
MAX_BLOCK_SIZE = 64 << 20
#: a table of more entries than this would not fit the memory an example may use
MAX_BLOCKS = 1 << 24
_HEADER = struct.Struct("<8sIIQQ")
ENTRY = struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class Header:
    """The header fields; *blocks* is the number of table entries."""

    size: int
    block_size: int

    @property
    def blocks(self) -> int:
        return -(-self.size // self.block_size)

    @property
    def data_start(self) -> int:
        """Where the first data block may go: after the header and the padded table."""
        table = self.blocks * ENTRY.size
        return HEADER_SIZE + -(-table // TABLE_ALIGNMENT) * TABLE_ALIGNMENT

    def pack(self) -> bytes:
        return _HEADER.pack(MAGIC, VERSION, self.block_size, self.size, self.blocks).ljust(HEADER_SIZE, b"\0")


def parse_header(data: bytes) -> Header:
    """Check and decode the first bytes of an image.

    :raises CorruptImageError: for a wrong magic, inconsistent fields or a hostile size.
    :raises UnsupportedFeatureError: for a version this plugin does not know.
    """
    if len(data) < _HEADER.size or not data.startswith(MAGIC):
        raise CorruptImageError("Image not in example format")
    _, version, block_size, size, blocks = _HEADER.unpack_from(data)
    if version != VERSION:
        raise UnsupportedFeatureError(f"example format version {version} is not supported")
    if not 512 <= block_size <= MAX_BLOCK_SIZE or block_size & (block_size - 1):
        raise CorruptImageError(f"example block size {block_size} is invalid")
    header = Header(size, block_size)
    if header.blocks != blocks or blocks > MAX_BLOCKS:
        raise CorruptImageError(f"example block table of {blocks} entries does not match the size {size}")
    return header
