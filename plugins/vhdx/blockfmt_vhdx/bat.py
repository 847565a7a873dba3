"""BAT geometry and the in-memory BAT (MS-VHDX §2.5).

The BAT interleaves one sector bitmap entry after every *chunk ratio* payload entries. Entries are
never Python objects: :class:`BatTable` keeps the raw little-endian bytes (what goes back to disk)
with a uint64 view over them, plus one byte per payload block naming its *kind* (zeros, data or
invalid), so runs of equal blocks are found by the regex engine at C speed instead of a Python
loop per block.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from blockfmt.errors import CorruptImageError, UnsupportedFeatureError

from .constants import (
    BAT_ENTRY_SIZE,
    BAT_OFFSET_MASK,
    BAT_STATE_MASK,
    MAX_SECTORS_PER_BLOCK,
    ZERO_READ_STATES,
    BatState,
)

__all__ = [
    "KIND_DATA",
    "KIND_INVALID",
    "KIND_PARENT",
    "KIND_PARTIAL",
    "KIND_ZERO",
    "BatGeometry",
    "BatTable",
    "make_entry",
]

#: payload block kinds, one byte each in :attr:`BatTable.kinds`
KIND_ZERO = ord("Z")
KIND_DATA = ord("D")
KIND_INVALID = ord("X")
#: differencing images only: NOT_PRESENT (the parent's bytes) and PARTIALLY_PRESENT (sector bitmap)
KIND_PARENT = ord("P")
KIND_PARTIAL = ord("B")


def _kind_of_state(state: int, has_parent: bool) -> int:
    """NOT_PRESENT reads the parent in a differencing image (§2.5.1.1); PARTIALLY_PRESENT is valid
    only there. Other zero-reading states (ZERO, UNMAPPED, UNDEFINED) read zeros in both, as Hyper-V's
    trim leaves them and dissect.hypervisor reads them."""
    if state == BatState.FULLY_PRESENT:
        return KIND_DATA
    if has_parent and state == BatState.NOT_PRESENT:
        return KIND_PARENT
    if has_parent and state == BatState.PARTIALLY_PRESENT:
        return KIND_PARTIAL
    return KIND_ZERO if state in ZERO_READ_STATES else KIND_INVALID


#: per has_parent: the kind of each state, and the kind of each low byte of an entry
_KIND_OF_STATE = {
    flag: bytes(_kind_of_state(state, flag) for state in range(BAT_STATE_MASK + 1)) for flag in (False, True)
}
_KIND_TABLE = {
    flag: bytes(kinds[b & BAT_STATE_MASK] for b in range(256)) for flag, kinds in _KIND_OF_STATE.items()
}
_RUNS = re.compile(rb"Z+|D+|X+|P+|B+")


def make_entry(state: int, file_offset: int = 0) -> int:
    """Pack a BAT entry: FileOffsetMB in bits 20-63, state in bits 0-2 (§2.5.1)."""
    return (file_offset & BAT_OFFSET_MASK) | (state & BAT_STATE_MASK)


@dataclass(frozen=True, slots=True)
class BatGeometry:
    """Sizes that follow from the metadata: chunk ratio, block counts, BAT entry count (§2.5).

    :ivar disk_size: virtual disk size in bytes.
    """

    disk_size: int
    block_size: int
    logical_sector_size: int
    has_parent: bool = False

    @property
    def chunk_ratio(self) -> int:
        """Payload blocks per sector bitmap block: (2**23 * LogicalSectorSize) / BlockSize (§2.5)."""
        return MAX_SECTORS_PER_BLOCK * self.logical_sector_size // self.block_size

    @property
    def payload_blocks(self) -> int:
        return -(-self.disk_size // self.block_size)

    @property
    def bitmap_blocks(self) -> int:
        return -(-self.payload_blocks // self.chunk_ratio)

    @property
    def entry_count(self) -> int:
        """Entries the BAT must hold (§2.5): up to the last payload entry, or every bitmap entry of a
        differencing file."""
        if self.has_parent:
            return self.bitmap_blocks * (self.chunk_ratio + 1)
        if not self.payload_blocks:
            return 0
        return self.payload_index(self.payload_blocks - 1) + 1

    def payload_index(self, block: int) -> int:
        """BAT index of payload block *block*: skip one bitmap entry per full chunk before it."""
        return block + block // self.chunk_ratio

    def bitmap_index(self, chunk: int) -> int:
        """BAT index of the sector bitmap entry of chunk *chunk* (after its payload entries)."""
        return chunk * (self.chunk_ratio + 1) + self.chunk_ratio

    def block_length(self, block: int) -> int:
        """Bytes of the virtual disk in payload block *block* (the last one may be short)."""
        return min(self.block_size, self.disk_size - block * self.block_size)


class BatTable:
    """The BAT in memory: raw bytes, a uint64 view, and one kind byte per payload block.

    :param raw: exactly ``geometry.entry_count * 8`` bytes read from the BAT region; kept and
        updated in place, so :meth:`entry_bytes` returns what belongs on disk.
    """

    def __init__(self, geometry: BatGeometry, raw: bytearray) -> None:
        if sys.byteorder != "little":
            raise UnsupportedFeatureError("the VHDX plugin needs a little-endian host")
        if len(raw) != geometry.entry_count * BAT_ENTRY_SIZE:
            raise CorruptImageError("VHDX BAT has the wrong size")
        self.geometry = geometry
        self.raw = raw
        self.entries = memoryview(raw).cast("Q")
        self._kind_of_state = _KIND_OF_STATE[geometry.has_parent]
        low = raw[0::BAT_ENTRY_SIZE].translate(_KIND_TABLE[geometry.has_parent])
        stride = geometry.chunk_ratio + 1
        self.kinds = bytearray().join(low[i : i + geometry.chunk_ratio] for i in range(0, len(low), stride))

    def entry(self, block: int) -> int:
        """The raw entry of payload block *block*."""
        return self.entries[self.geometry.payload_index(block)]

    def state(self, block: int) -> int:
        return self.entry(block) & BAT_STATE_MASK

    def file_offset(self, block: int) -> int:
        return self.entry(block) & BAT_OFFSET_MASK

    def set_entry(self, block: int, value: int) -> int:
        """Store *value* for payload block *block*; returns its BAT index."""
        index = self.geometry.payload_index(block)
        self.entries[index] = value
        self.kinds[block] = self._kind_of_state[value & BAT_STATE_MASK]
        return index

    def bitmap_entry(self, chunk: int) -> int:
        """The raw sector bitmap entry of chunk *chunk* (differencing images)."""
        return self.entries[self.geometry.bitmap_index(chunk)]

    def set_bitmap_entry(self, chunk: int, value: int) -> int:
        """Store the sector bitmap entry of chunk *chunk*; returns its BAT index."""
        index = self.geometry.bitmap_index(chunk)
        self.entries[index] = value
        return index

    def entry_bytes(self, index: int) -> bytes:
        """The on-disk bytes of BAT entry *index*."""
        return bytes(self.raw[index * BAT_ENTRY_SIZE : (index + 1) * BAT_ENTRY_SIZE])

    def runs(self, first: int, end: int) -> Iterator[tuple[int, int, int]]:
        """Yield ``(kind, start_block, end_block)`` for maximal runs of one kind in ``[first, end)``."""
        for match in _RUNS.finditer(self.kinds, first, end):
            yield self.kinds[match.start()], match.start(), match.end()
