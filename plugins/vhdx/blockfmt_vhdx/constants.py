"""Fixed values of the VHDX format: signatures, GUIDs, offsets, limits and BAT states.

Every value cites the section of the "VHDX Format Specification v1.00" (MS-VHDX) that defines it.
GUIDs are kept as :class:`uuid.UUID`; on disk they are stored in Microsoft's mixed-endian layout,
which is :attr:`uuid.UUID.bytes_le`.
"""

from __future__ import annotations

import enum
import uuid

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

ZERO_GUID = uuid.UUID(int=0)

# -- MS-VHDX §2.1: the header section (first MiB of the file) --------------------------------------

#: every structure of the header section sits in its own 64 KiB slot (§2.1)
HEADER_BLOCK_SIZE = 64 * KiB
FILE_ID_OFFSET = 0
HEADER1_OFFSET = 1 * HEADER_BLOCK_SIZE
HEADER2_OFFSET = 2 * HEADER_BLOCK_SIZE
REGION_TABLE1_OFFSET = 3 * HEADER_BLOCK_SIZE
REGION_TABLE2_OFFSET = 4 * HEADER_BLOCK_SIZE
HEADER_OFFSETS = (HEADER1_OFFSET, HEADER2_OFFSET)
REGION_TABLE_OFFSETS = (REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET)
#: the file identifier and both headers: never written through the log, since they locate it (§2.2.2)
HEADERS_END = HEADER2_OFFSET + HEADER_BLOCK_SIZE
#: the header section is always 1 MiB; objects in the file are aligned to 1 MiB (§2.1, §2.2.3.2)
HEADER_SECTION_SIZE = 1 * MiB
#: alignment of every region, log and payload block offset (§2.2.3.2, §2.5.1)
OBJECT_ALIGNMENT = 1 * MiB

# -- §2.2.1 file type identifier ---------------------------------------------------------------
FILE_SIGNATURE = b"vhdxfile"
#: the creator field: 256 UTF-16 code units (§2.2.1)
CREATOR_SIZE = 512

# -- §2.2.2 headers ----------------------------------------------------------------------------
HEADER_SIGNATURE = b"head"
#: the checksum covers the first 4 KiB of the 64 KiB header slot (§2.2.2)
HEADER_SIZE = 4 * KiB
#: Version MUST be 1 (§2.2.2)
HEADER_VERSION = 1
#: LogVersion MUST be 0 (§2.2.2)
LOG_VERSION = 0
#: byte offset of the Checksum field in headers, region tables and log entry headers (§2.3.1.1)
CHECKSUM_OFFSET = 4

# -- §2.2.3 region table -----------------------------------------------------------------------
REGION_SIGNATURE = b"regi"
REGION_TABLE_SIZE = 64 * KiB
REGION_MAX_ENTRIES = 2047
#: §2.2.3.2: Required bit of a region table entry
REGION_REQUIRED = 0x1
BAT_REGION_GUID = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_REGION_GUID = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")

# -- §2.3 log ----------------------------------------------------------------------------------
#: log length and offset are multiples of 1 MiB; the smallest log is 1 MiB (§2.2.2)
LOG_ALIGNMENT = 1 * MiB
DEFAULT_LOG_SIZE = 1 * MiB
#: LogLength is a 32-bit field (§2.2.2)
LOG_SIZE_LIMIT = 1 << 32
#: replay grows the file to LastFileOffset rounded up to this (§2.3.1.1: a multiple of 1 MB)
FILE_SIZE_ALIGNMENT = 1 * MiB
#: every log entry, descriptor target and zero range is a multiple of this (§2.3.1)
LOG_SECTOR_SIZE = 4 * KiB
#: "loge" (§2.3.1.1)
LOG_ENTRY_SIGNATURE = b"loge"
#: "zero" (§2.3.1.2)
ZERO_DESCRIPTOR_SIGNATURE = b"zero"
#: "desc" (§2.3.1.3)
DATA_DESCRIPTOR_SIGNATURE = b"desc"
#: "data" (§2.3.1.4)
DATA_SECTOR_SIGNATURE = b"data"
#: size of one zero or data descriptor (§2.3.1.2, §2.3.1.3)
DESCRIPTOR_SIZE = 32
#: descriptors that fill one whole log sector
DESCRIPTORS_PER_SECTOR = LOG_SECTOR_SIZE // DESCRIPTOR_SIZE

# -- §2.5 BAT ----------------------------------------------------------------------------------
BAT_ENTRY_SIZE = 8
#: low 3 bits: state; bits 20-63: FileOffsetMB (§2.5.1)
BAT_STATE_MASK = 0x7
BAT_OFFSET_MASK = 0xFFFF_FFFF_FFF0_0000
#: §2.5: chunk ratio = (2**23 * LogicalSectorSize) / BlockSize
MAX_SECTORS_PER_BLOCK = 1 << 23


class BatState(enum.IntEnum):
    """Payload block states (MS-VHDX §2.5.1.1). ``UNMAPPED_V095`` is a pre-1.0 spelling QEMU accepts."""

    NOT_PRESENT = 0
    UNDEFINED = 1
    ZERO = 2
    UNMAPPED = 3
    UNMAPPED_V095 = 5
    FULLY_PRESENT = 6
    PARTIALLY_PRESENT = 7


class BitmapState(enum.IntEnum):
    """Sector bitmap block states (MS-VHDX §2.5.1.2)."""

    NOT_PRESENT = 0
    PRESENT = 6


#: states whose payload block reads as zeros when there is no parent (§2.5.1.1)
ZERO_READ_STATES = frozenset(
    {BatState.NOT_PRESENT, BatState.UNDEFINED, BatState.ZERO, BatState.UNMAPPED, BatState.UNMAPPED_V095}
)

# -- §2.6 metadata region ----------------------------------------------------------------------
METADATA_SIGNATURE = b"metadata"
#: the metadata table fills the first 64 KiB of the region; items start at or after it (§2.6.1)
METADATA_TABLE_SIZE = 64 * KiB
METADATA_MAX_ENTRIES = 2047
#: an item is at most 1 MiB long (§2.6.1.2)
METADATA_ITEM_MAX_LENGTH = 1 * MiB
#: §2.6.1.2 entry flags
METADATA_IS_USER = 0x1
METADATA_IS_VIRTUAL_DISK = 0x2
METADATA_IS_REQUIRED = 0x4
#: size QEMU and Hyper-V give the metadata region
METADATA_REGION_SIZE = 1 * MiB

FILE_PARAMETERS_GUID = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE_GUID = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
PAGE83_DATA_GUID = uuid.UUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
LOGICAL_SECTOR_SIZE_GUID = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PHYSICAL_SECTOR_SIZE_GUID = uuid.UUID("CDA348C7-445D-4471-9CC9-E9885251C556")
PARENT_LOCATOR_GUID = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
#: §2.6.2.6: LocatorType of a VHDX parent locator
VHDX_PARENT_LOCATOR_TYPE = uuid.UUID("B04AEFB7-D19E-4A81-B789-25B8E9445913")

#: §2.6.2.1 file parameter flags
PARAMS_LEAVE_BLOCKS_ALLOCATED = 0x1
PARAMS_HAS_PARENT = 0x2
BLOCK_SIZE_MIN = 1 * MiB
BLOCK_SIZE_MAX = 256 * MiB
#: §2.6.2.2: VirtualDiskSize is at most 64 TiB
MAX_DISK_SIZE = 64 * TiB
#: §2.6.2.4, §2.6.2.5: the only sector sizes
SECTOR_SIZES = (512, 4096)
