"""Writing a new VDI image laid out exactly as QEMU 7.2's ``vdi_co_do_create`` lays it out.

Header at 0, block map at 0x200 padded with zeros to a whole sector, data area right after it.
A static image lists every block in order and has its data area sized (sparse) at create time.
"""

from __future__ import annotations

import array
import uuid

from blockfmt.errors import InvalidOptionError
from blockfmt.fileio import ImageFile

from .bmap import entries_to_bytes
from .constants import (
    BMAP_ENTRY_SIZE,
    BMAP_UNALLOCATED,
    DEFAULT_BLOCK_SIZE,
    DISK_SIZE_MAX,
    HEADER_SIZE_V1_1,
    QEMU_BMAP_OFFSET,
    SECTOR_SIZE,
    VDI_SIGNATURE,
    VDI_TEXT,
    VDI_VERSION_1_1,
    ImageType,
)
from .structs import Header, PreHeader, round_up, unsupported_size_message

__all__ = ["plan_header", "write_new_image"]

#: block map entries written per request while creating (1 MiB of map)
_BMAP_CHUNK_ENTRIES = 1 << 18
_TEXT_FIELD = 64
_DESCRIPTION_FIELD = 256
_RESERVED_FIELD = 56
_NULL_UUID = uuid.UUID(int=0)


def plan_header(size: int, *, static: bool) -> Header:
    """The header QEMU writes for a disk of exactly *size* bytes (``vdi_co_do_create``).

    :raises InvalidOptionError: above ``VDI_DISK_SIZE_MAX``, with QEMU's message.
    """
    if size > DISK_SIZE_MAX:
        raise InvalidOptionError(unsupported_size_message(size))
    blocks = -(-size // DEFAULT_BLOCK_SIZE)
    bmap_size = round_up(blocks * BMAP_ENTRY_SIZE, SECTOR_SIZE)
    return Header(
        pre=PreHeader(VDI_TEXT.ljust(_TEXT_FIELD, b"\0"), VDI_SIGNATURE, VDI_VERSION_1_1),
        header_size=HEADER_SIZE_V1_1,
        image_type=ImageType.STATIC if static else ImageType.DYNAMIC,
        image_flags=0,
        description=bytes(_DESCRIPTION_FIELD),
        offset_bmap=QEMU_BMAP_OFFSET,
        offset_data=QEMU_BMAP_OFFSET + bmap_size,
        cylinders=0,
        heads=0,
        sectors=0,
        sector_size=SECTOR_SIZE,
        unused1=0,
        disk_size=size,
        block_size=DEFAULT_BLOCK_SIZE,
        block_extra=0,
        blocks_in_image=blocks,
        blocks_allocated=blocks if static else 0,
        uuid_image=uuid.uuid4(),
        uuid_last_snap=uuid.uuid4(),
        uuid_link=_NULL_UUID,
        uuid_parent=_NULL_UUID,
        reserved=bytes(_RESERVED_FIELD),
    )


def write_new_image(file: ImageFile, size: int, *, static: bool) -> None:
    """Write a new, empty image into the empty *file*.

    The map goes out in 1 MiB pieces, so even QEMU's largest image (a 2 GiB map) never sits in memory.
    """
    header = plan_header(size, static=static)
    file.pwrite(header.pack(), 0)
    blocks = header.blocks_in_image
    unallocated = array.array("I", [BMAP_UNALLOCATED]) * min(blocks, _BMAP_CHUNK_ENTRIES)
    for first in range(0, blocks, _BMAP_CHUNK_ENTRIES):
        count = min(_BMAP_CHUNK_ENTRIES, blocks - first)
        entries = array.array("I", range(first, first + count)) if static else unallocated[:count]
        file.pwrite(entries_to_bytes(entries), header.offset_bmap + first * BMAP_ENTRY_SIZE)
    map_end = header.offset_bmap + blocks * BMAP_ENTRY_SIZE
    if header.offset_data > map_end:  # the zero padding of the map's last sector
        file.pwrite(bytes(header.offset_data - map_end), map_end)
    if static:
        file.truncate(header.offset_data + blocks * header.block_size)
