"""Creating new VHDX images: option rules, layout planning and writing (QEMU's ``vhdx_co_create``).

The layout is QEMU's, so ``qemu-img check`` accepts the result: file identifier, headers at 64 and
128 KiB, region tables at 192 and 256 KiB, the log at 1 MiB, then the BAT, the metadata region and
the payload. Unlike QEMU, a fixed image keeps every block FULLY_PRESENT at its preallocated offset
(as Hyper-V makes them) whatever ``block_state_zero`` says (NOTES.md #5).
"""

from __future__ import annotations

import array
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from blockfmt.errors import InvalidOptionError
from blockfmt.fileio import ImageFile

from .bat import BatGeometry, make_entry
from .constants import (
    BAT_ENTRY_SIZE,
    BAT_REGION_GUID,
    BLOCK_SIZE_MAX,
    DEFAULT_LOG_SIZE,
    FILE_ID_OFFSET,
    HEADER_SECTION_SIZE,
    HEADER_VERSION,
    LOG_ALIGNMENT,
    LOG_SIZE_LIMIT,
    LOG_VERSION,
    MAX_DISK_SIZE,
    METADATA_REGION_GUID,
    METADATA_REGION_SIZE,
    OBJECT_ALIGNMENT,
    REGION_TABLE_OFFSETS,
    SECTOR_SIZES,
    ZERO_GUID,
    BatState,
    GiB,
    MiB,
    TiB,
)
from .headers import write_headers
from .metadata import DiskParameters, bat_region_entries, build_metadata
from .structs import FileIdentifier, Header, RegionTable, RegionTableEntry

__all__ = ["Layout", "plan_layout", "write_new_image"]

#: the size unit qemu-img rounds the virtual size up to (BDRV_SECTOR_SIZE)
_QEMU_SECTOR = 512
#: room QEMU leaves between the end of the BAT and the first payload block (metadata + 4 MiB spare)
_METADATA_AND_SPARE = 5 * MiB
_CREATOR = "blockfmt"
#: auto block size, as QEMU picks it: (disk size above, block size)
_AUTO_BLOCK_SIZES = ((32 * TiB, 64 * MiB), (100 * GiB, 32 * MiB), (1 * GiB, 16 * MiB))
_AUTO_BLOCK_SIZE_SMALL = 8 * MiB
#: the initial BAT is written in pieces of about this size
_BAT_PIECE_BYTES = 4 * MiB


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


@dataclass(frozen=True, slots=True)
class Layout:
    """Where everything of a new image goes; all offsets are 1 MiB aligned."""

    params: DiskParameters
    log_offset: int
    log_length: int
    bat_offset: int
    bat_length: int
    metadata_offset: int
    data_offset: int
    fixed: bool
    block_state_zero: bool

    @property
    def geometry(self) -> BatGeometry:
        return self.params.geometry

    @property
    def file_size(self) -> int:
        """A dynamic image ends where payload starts; a fixed one holds every block in full."""
        if self.fixed:
            return self.data_offset + self.geometry.payload_blocks * self.params.block_size
        return self.data_offset


def round_like_qemu_img(size: int, options: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Apply ``qemu-img create``'s silent rounding before the exact rules of :func:`plan_layout`.

    As QEMU's ``vhdx_co_create_opts``: the disk size goes up to 512 bytes (to the logical sector
    size for 4096), log and block size up to 1 MiB, a block size above 256 MiB becomes 256 MiB, and
    a block size of 0 means "choose automatically".
    """
    logical = _sector_size(options.get("logical_sector_size"), "logical_sector_size", 512)
    rounded = dict(options)
    if options.get("log_size") is not None:
        rounded["log_size"] = _round_up(options["log_size"], LOG_ALIGNMENT)
    if options.get("block_size") is not None:
        rounded["block_size"] = min(_round_up(options["block_size"], MiB), BLOCK_SIZE_MAX) or None
    return _round_up(size, max(_QEMU_SECTOR, logical)), rounded


def plan_layout(size: int, options: dict[str, Any]) -> Layout:
    """Validate *options* as QEMU's ``vhdx_co_create`` does and place every structure.

    Values are taken exactly (QMP ``blockdev-create``); the qemu-img path first passes them through
    :func:`round_like_qemu_img`. Absent (None) options take QEMU's defaults.

    :raises InvalidOptionError: with QEMU's message.
    """
    logical = _sector_size(options.get("logical_sector_size"), "logical_sector_size", 512)
    physical = _sector_size(options.get("physical_sector_size"), "physical_sector_size", logical)
    if size > MAX_DISK_SIZE:
        raise InvalidOptionError("Image size too large; max of 64TB")
    if size % logical:
        raise InvalidOptionError(f"Image size must be a multiple of the logical sector size ({logical})")
    log_size = options.get("log_size")
    if log_size is None:
        log_size = DEFAULT_LOG_SIZE
    if log_size >= LOG_SIZE_LIMIT:
        raise InvalidOptionError("Log size must be smaller than 4 GB")
    if log_size < LOG_ALIGNMENT or log_size % LOG_ALIGNMENT:
        raise InvalidOptionError("Log size must be a multiple of 1 MB")
    block_size = options.get("block_size")
    if block_size is None:
        block_size = _auto_block_size(size)
    if block_size < MiB or block_size % MiB:
        raise InvalidOptionError("Block size must be a multiple of 1 MB")
    if block_size & (block_size - 1):
        raise InvalidOptionError("Block size must be a power of two")
    if block_size > BLOCK_SIZE_MAX:
        raise InvalidOptionError(f"Block size must not exceed {BLOCK_SIZE_MAX}")
    subformat = options.get("subformat") or "dynamic"
    if subformat not in ("dynamic", "fixed"):
        raise InvalidOptionError(f"Parameter 'subformat' does not accept value '{subformat}'")
    zero = options.get("block_state_zero")
    fixed = subformat == "fixed"
    params = DiskParameters(block_size, size, logical, physical, uuid.uuid4(), leave_blocks_allocated=fixed)
    bat_length = max(_round_up(bat_region_entries(params) * BAT_ENTRY_SIZE, MiB), OBJECT_ALIGNMENT)
    bat_offset = HEADER_SECTION_SIZE + log_size
    return Layout(
        params,
        log_offset=HEADER_SECTION_SIZE,
        log_length=log_size,
        bat_offset=bat_offset,
        bat_length=bat_length,
        metadata_offset=bat_offset + bat_length,
        data_offset=bat_offset + bat_length + _METADATA_AND_SPARE,
        fixed=fixed,
        block_state_zero=True if zero is None else bool(zero),
    )


def _sector_size(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    if value not in SECTOR_SIZES:
        raise InvalidOptionError(f"Parameter '{name}' must be 512 or 4096")
    return int(value)


def _auto_block_size(size: int) -> int:
    for above, block_size in _AUTO_BLOCK_SIZES:
        if size > above:
            return block_size
    return _AUTO_BLOCK_SIZE_SMALL


def bat_pieces(layout: Layout) -> Iterator[tuple[int, bytes]]:
    """The initial BAT as ``(byte offset in the BAT, bytes)`` pieces of at most about
    :data:`_BAT_PIECE_BYTES` (a 64 TiB disk has a 512 MiB BAT, never held whole): FULLY_PRESENT
    blocks back to back for fixed images, ZERO payload entries for dynamic ones; sector bitmap
    entries stay NOT_PRESENT (§2.5.1.2). Nothing for a BAT of NOT_PRESENT entries (the file's zeros)."""
    if not layout.fixed and not layout.block_state_zero:
        return
    geometry = layout.geometry
    ratio, block_size = geometry.chunk_ratio, layout.params.block_size
    chunks_per_piece = max(1, _BAT_PIECE_BYTES // ((ratio + 1) * BAT_ENTRY_SIZE))
    zero_chunk = array.array("Q", [make_entry(BatState.ZERO)]) * ratio + array.array("Q", [0])
    for chunk in range(0, geometry.bitmap_blocks, chunks_per_piece):
        first = chunk * ratio
        count = min(chunks_per_piece * ratio, geometry.payload_blocks - first)
        end_index = geometry.payload_index(first + count - 1) + 1
        if layout.fixed:
            entries = array.array("Q", bytes((end_index - geometry.payload_index(first)) * BAT_ENTRY_SIZE))
            start = make_entry(BatState.FULLY_PRESENT, layout.data_offset + first * block_size)
            for n in range(0, count, ratio):  # one slice per chunk: its bitmap entry stays zero
                size = min(ratio, count - n)
                at = n + n // ratio
                begin = start + n * block_size
                entries[at : at + size] = array.array(
                    "Q", range(begin, begin + size * block_size, block_size)
                )
        else:
            entries = (zero_chunk * chunks_per_piece)[: end_index - geometry.payload_index(first)]
        yield geometry.payload_index(first) * BAT_ENTRY_SIZE, entries.tobytes()


def write_new_image(file: ImageFile, layout: Layout) -> None:
    """Write a new image described by *layout* into the empty *file* (no flush: the caller's)."""
    file.truncate(layout.file_size)
    file.pwrite(FileIdentifier(_CREATOR).pack(), FILE_ID_OFFSET)
    header = Header(
        sequence_number=1,
        file_write_guid=uuid.uuid4(),
        data_write_guid=uuid.uuid4(),
        log_guid=ZERO_GUID,
        log_version=LOG_VERSION,
        version=HEADER_VERSION,
        log_length=layout.log_length,
        log_offset=layout.log_offset,
    )
    write_headers(file, header)
    regions = RegionTable(
        (
            RegionTableEntry(BAT_REGION_GUID, layout.bat_offset, layout.bat_length, True),
            RegionTableEntry(METADATA_REGION_GUID, layout.metadata_offset, METADATA_REGION_SIZE, True),
        )
    ).pack()
    for offset in REGION_TABLE_OFFSETS:
        file.pwrite(regions, offset)
    for offset, piece in bat_pieces(layout):
        file.pwrite(piece, layout.bat_offset + offset)
    file.pwrite(build_metadata(layout.params), layout.metadata_offset)
