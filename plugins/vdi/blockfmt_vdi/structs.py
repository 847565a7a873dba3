"""The VDI pre-header and v1.1 header (VirtualBox ``VDICore.h`` ``VDIPREHEADER``/``VDIHEADER1``).

Both live in the first sector of the file, little-endian. UUIDs are stored in the mixed-endian
Microsoft GUID layout (``uuid.UUID(bytes_le=...)``), which is what QEMU's ``qemu_uuid_bswap`` undoes.
No I/O here: :meth:`Header.parse` takes the sector's bytes and applies QEMU 7.2's open-time rules in
QEMU's order, so the first problem reported is the one ``qemu-img`` reports, word for word.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, replace

from blockfmt.errors import CorruptImageError, UnsupportedFeatureError

from .constants import (
    BLOCKS_IN_IMAGE_MAX,
    DEFAULT_BLOCK_SIZE,
    DISK_SIZE_MAX,
    SECTOR_SIZE,
    VDI_SIGNATURE,
    VDI_VERSION_1_1,
    ImageType,
)

__all__ = ["Header", "PreHeader", "round_up", "unsupported_size_message"]

_NULL_UUID = uuid.UUID(int=0)
_TEXT_SIZE = 64
_DESCRIPTION_SIZE = 256
_RESERVED_SIZE = 56  # QEMU's unused2[7]; VirtualBox keeps the LCHS geometry in its first 16 bytes


def round_up(value: int, alignment: int) -> int:
    """*value* rounded up to a multiple of *alignment*."""
    return -(-value // alignment) * alignment


def unsupported_size_message(size: int) -> str:
    """QEMU's text for a disk larger than ``VDI_DISK_SIZE_MAX`` (shared by open and create)."""
    return f"Unsupported VDI image size (size is {size:#x}, max supported is {DISK_SIZE_MAX:#x})"


@dataclass(frozen=True, slots=True)
class PreHeader:
    """``VDIPREHEADER``: a free-text banner, the signature and the header version (VDICore.h)."""

    STRUCT = struct.Struct(f"<{_TEXT_SIZE}sII")
    SIZE = STRUCT.size

    text: bytes
    signature: int
    version: int

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> PreHeader:
        """Unpack the first :attr:`SIZE` bytes of *buf* (:meth:`Header.unpack` checks its length
        first); the signature is judged by :meth:`Header.parse`."""
        return cls(*cls.STRUCT.unpack_from(buf, 0))

    def pack(self) -> bytes:
        return self.STRUCT.pack(self.text, self.signature, self.version)


@dataclass(frozen=True, slots=True)
class Header:
    """``VDIHEADER1`` after its pre-header, padded to one sector as QEMU's ``VdiHeader`` is.

    Field names are QEMU's (``vdi.c``). ``disk_size`` is kept as stored; :attr:`virtual_size` is the
    sector-rounded size QEMU exposes ("VBoxManage convertfromraw can create images with odd sizes").
    """

    BODY = struct.Struct(f"<III{_DESCRIPTION_SIZE}sIIIIIIIQIIII16s16s16s16s{_RESERVED_SIZE}s")
    SIZE = PreHeader.SIZE + BODY.size

    pre: PreHeader
    header_size: int
    image_type: int
    image_flags: int
    description: bytes
    offset_bmap: int
    offset_data: int
    cylinders: int
    heads: int
    sectors: int
    sector_size: int
    unused1: int
    disk_size: int
    block_size: int
    block_extra: int
    blocks_in_image: int
    blocks_allocated: int
    uuid_image: uuid.UUID
    uuid_last_snap: uuid.UUID
    uuid_link: uuid.UUID
    uuid_parent: uuid.UUID
    reserved: bytes

    @property
    def virtual_size(self) -> int:
        """The disk size QEMU exposes: ``disk_size`` rounded up to whole sectors."""
        return round_up(self.disk_size, SECTOR_SIZE)

    @property
    def is_static(self) -> bool:
        return self.image_type == ImageType.STATIC

    @classmethod
    def unpack(cls, buf: bytes | bytearray | memoryview) -> Header:
        """Unpack a header without judging it (for tools that inspect broken images).

        :raises CorruptImageError: when *buf* is shorter than :attr:`SIZE`.
        """
        if len(buf) < cls.SIZE:
            raise CorruptImageError(f"VDI header is truncated ({len(buf)} of {cls.SIZE} bytes)")
        pre = PreHeader.parse(buf)
        fields = list(cls.BODY.unpack_from(buf, PreHeader.SIZE))
        for i in range(16, 20):  # the four UUIDs
            fields[i] = uuid.UUID(bytes_le=fields[i])
        return cls(pre, *fields)

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Header:
        """Unpack and validate a header the way QEMU 7.2's ``vdi_open`` does, in its order.

        :raises CorruptImageError: bad signature, or a disk larger than its block map covers.
        :raises UnsupportedFeatureError: any other rule QEMU refuses with ``-ENOTSUP`` (a link or
            parent UUID in an image that is not differencing).
        """
        header = cls.unpack(buf)
        header.validate()
        return header

    def validate(self) -> None:
        """Apply QEMU's open-time rules; see :meth:`parse`."""
        if self.disk_size > DISK_SIZE_MAX:
            raise UnsupportedFeatureError(unsupported_size_message(self.disk_size))
        if self.pre.signature != VDI_SIGNATURE:
            raise CorruptImageError(f"Image not in VDI format (bad signature {self.pre.signature:08x})")
        if self.pre.version != VDI_VERSION_1_1:
            major, minor = self.pre.version >> 16, self.pre.version & 0xFFFF
            raise UnsupportedFeatureError(f"unsupported VDI image (version {major}.{minor})")
        if self.offset_bmap % SECTOR_SIZE:
            raise UnsupportedFeatureError(
                f"unsupported VDI image (unaligned block map offset {self.offset_bmap:#x})"
            )
        if self.offset_data % SECTOR_SIZE:
            raise UnsupportedFeatureError(
                f"unsupported VDI image (unaligned data offset {self.offset_data:#x})"
            )
        if self.sector_size != SECTOR_SIZE:
            raise UnsupportedFeatureError(
                f"unsupported VDI image (sector size {self.sector_size} is not {SECTOR_SIZE})"
            )
        if self.block_size != DEFAULT_BLOCK_SIZE:
            raise UnsupportedFeatureError(
                f"unsupported VDI image (block size {self.block_size} is not {DEFAULT_BLOCK_SIZE})"
            )
        room = self.blocks_in_image * self.block_size
        if self.virtual_size > room:
            raise CorruptImageError(
                f"unsupported VDI image (disk size {self.virtual_size}, image bitmap has room for {room})"
            )
        # A differencing image (type 4) names its parent by the link UUID (the parent's image UUID)
        # and the parent's modification UUID; in any other image QEMU's rules hold: both are NULL.
        if self.image_type == ImageType.DIFF:
            if self.uuid_link == _NULL_UUID:
                raise CorruptImageError("differencing VDI image has a NULL link UUID")
        elif self.uuid_link != _NULL_UUID:
            raise UnsupportedFeatureError("unsupported VDI image (non-NULL link UUID)")
        elif self.uuid_parent != _NULL_UUID:
            raise UnsupportedFeatureError("unsupported VDI image (non-NULL parent UUID)")
        if self.blocks_in_image > BLOCKS_IN_IMAGE_MAX:
            raise UnsupportedFeatureError(
                f"unsupported VDI image (too many blocks {self.blocks_in_image}, "
                f"max is {BLOCKS_IN_IMAGE_MAX})"
            )

    def pack(self) -> bytes:
        """The header sector, byte for byte as :meth:`unpack` read it."""
        return self.pre.pack() + self.BODY.pack(
            self.header_size,
            self.image_type,
            self.image_flags,
            self.description,
            self.offset_bmap,
            self.offset_data,
            self.cylinders,
            self.heads,
            self.sectors,
            self.sector_size,
            self.unused1,
            self.disk_size,
            self.block_size,
            self.block_extra,
            self.blocks_in_image,
            self.blocks_allocated,
            self.uuid_image.bytes_le,
            self.uuid_last_snap.bytes_le,
            self.uuid_link.bytes_le,
            self.uuid_parent.bytes_le,
            self.reserved,
        )

    def with_blocks_allocated(self, count: int) -> Header:
        """A copy with a new allocated-block count (the only field that changes after create)."""
        return replace(self, blocks_allocated=count)
