"""Named values of the VDI format (VirtualBox ``VDICore.h``, header v1.1, as QEMU 7.2 ``vdi.c`` uses it).

Every limit QEMU enforces is here under QEMU's name, so the open-time messages and the create-time
size check quote the same numbers QEMU prints.
"""

from __future__ import annotations

import enum

__all__ = [
    "BLOCKS_IN_IMAGE_MAX",
    "BMAP_DISCARDED",
    "BMAP_ENTRY_SIZE",
    "BMAP_UNALLOCATED",
    "DEFAULT_BLOCK_SIZE",
    "DISK_SIZE_MAX",
    "FORMAT_NAME",
    "HEADER_SIZE_V1_1",
    "HEADER_STRUCT_SIZE",
    "MIB",
    "QEMU_BMAP_OFFSET",
    "SECTOR_SIZE",
    "VDI_SIGNATURE",
    "VDI_TEXT",
    "VDI_VERSION_1_1",
    "ImageType",
    "is_allocated",
]

FORMAT_NAME = "vdi"

MIB = 1 << 20

#: the only sector size QEMU (and VirtualBox) write; ``sector_size`` must hold it
SECTOR_SIZE = 512
#: the only block size QEMU accepts (``DEFAULT_CLUSTER_SIZE``); a VDI block is a QEMU cluster
DEFAULT_BLOCK_SIZE = MIB

#: ``u32Signature`` of the pre-header (VDICore.h ``VDI_IMAGE_SIGNATURE``)
VDI_SIGNATURE = 0xBEDA107F
#: ``u32Version``: major 1 in the high half, minor 1 in the low half
VDI_VERSION_1_1 = 0x00010001
#: the free-text banner of the pre-header; QEMU writes its own, VirtualBox "<<< ... VirtualBox Disk Image >>>"
VDI_TEXT = b"<<< QEMU VM Virtual Disk Image >>>\n"

#: bytes of the pre-header plus the v1.1 header with its reserved tail: one sector
HEADER_STRUCT_SIZE = 512
#: ``cbHeader`` of a v1.1 header as QEMU and VirtualBox store it (the header after the pre-header)
HEADER_SIZE_V1_1 = 0x180
#: QEMU and VirtualBox put the block map in the sector right after the header
QEMU_BMAP_OFFSET = HEADER_STRUCT_SIZE

#: one block map entry: the little-endian uint32 index of the block in the data area
BMAP_ENTRY_SIZE = 4
#: a block never written: its content is arbitrary, QEMU reads zeros (``VDI_UNALLOCATED``)
BMAP_UNALLOCATED = 0xFFFFFFFF
#: a block given back by a discard: reads as zeros (``VDI_DISCARDED``, VirtualBox ``VDI_IMAGE_BLOCK_ZERO``)
BMAP_DISCARDED = 0xFFFFFFFE

#: QEMU reads the whole map in one request of at most INT_MAX bytes rounded to sectors, which caps it:
#: ``(INT_MAX + 1 - 512) / 4`` (vdi.c ``VDI_BLOCKS_IN_IMAGE_MAX``)
BLOCKS_IN_IMAGE_MAX = ((1 << 31) - SECTOR_SIZE) // BMAP_ENTRY_SIZE
#: the largest disk QEMU opens or creates, 512 TiB - 128 MiB (``VDI_DISK_SIZE_MAX``)
DISK_SIZE_MAX = BLOCKS_IN_IMAGE_MAX * DEFAULT_BLOCK_SIZE


class ImageType(enum.IntEnum):
    """``u32Type`` (VDICore.h ``VDIIMAGETYPE``). QEMU reads any type and writes only the first two."""

    DYNAMIC = 1  # VDI_IMAGE_TYPE_NORMAL: blocks allocated on first write
    STATIC = 2  # VDI_IMAGE_TYPE_FIXED: every block preallocated at create time
    UNDO = 3
    DIFF = 4  # differencing image on top of a parent


def is_allocated(entry: int) -> bool:
    """True when a block map *entry* names a block of the data area (``VDI_IS_ALLOCATED``)."""
    return entry < BMAP_DISCARDED
