"""Header parsing and packing: golden bytes from qemu-img, QEMU 7.2's exact messages, hostile bytes."""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockfmt.errors import BlockFormatError, CorruptImageError, UnsupportedFeatureError
from blockfmt_vdi.constants import BLOCKS_IN_IMAGE_MAX, DISK_SIZE_MAX, HEADER_STRUCT_SIZE, ImageType
from blockfmt_vdi.create import plan_header
from blockfmt_vdi.structs import Header, PreHeader

# The header sector of `qemu-img create -f vdi t.vdi 64M` (QEMU 7.2.22), split by field groups.
QEMU_64M_HEADER = (
    bytes.fromhex(
        "3c3c3c2051454d5520564d205669727475616c204469736b20496d616765203e3e3e0a"  # banner
        + "00" * 29
        + "7f10dabe01000100"  # signature, version 1.1
        + "800100000100000000000000"  # header_size 0x180, type dynamic, flags
    )
    + bytes(256)  # description
    + bytes.fromhex(
        "00020000"  # offset_bmap 0x200
        "00040000"  # offset_data 0x400
        "000000000000000000000000"  # geometry (unused)
        "00020000"  # sector_size 512
        "00000000"  # unused1
        "0000000400000000"  # disk_size 64 MiB
        "00001000"  # block_size 1 MiB
        "00000000"  # block_extra
        "40000000"  # blocks_in_image 64
        "00000000"  # blocks_allocated
        "a1114a7f8ea9f944b6061a115afbaeda"  # uuid_image
        "bbc5cfb330e9dd4e9b8f077c1862b9c2"  # uuid_last_snap
    )
    + bytes(32)  # uuid_link, uuid_parent
    + bytes(56)
)

# Field offsets iotest 084 pokes (ds_offset, bs_offset, bii_offset).
DISK_SIZE_AT, BLOCK_SIZE_AT, BLOCKS_IN_IMAGE_AT = 368, 376, 384


def poke(buf: bytes, offset: int, raw: bytes) -> bytes:
    return buf[:offset] + raw + buf[offset + len(raw) :]


def test_sizes_match_the_on_disk_layout():
    """QEMU_BUILD_BUG_ON(sizeof(VdiHeader) != 512), and the pre-header is 72 bytes (VDICore.h)."""
    assert len(QEMU_64M_HEADER) == HEADER_STRUCT_SIZE
    assert Header.SIZE == HEADER_STRUCT_SIZE
    assert PreHeader.SIZE == 72


def test_golden_qemu_header_parses_to_qemu_values():
    header = Header.parse(QEMU_64M_HEADER)
    assert header.pre.text.rstrip(b"\0") == b"<<< QEMU VM Virtual Disk Image >>>\n"
    assert (header.header_size, header.image_type, header.offset_bmap, header.offset_data) == (
        0x180,
        ImageType.DYNAMIC,
        0x200,
        0x400,
    )
    assert (header.disk_size, header.block_size, header.blocks_in_image, header.blocks_allocated) == (
        64 << 20,
        1 << 20,
        64,
        0,
    )
    assert header.uuid_image == uuid.UUID("7f4a11a1-a98e-44f9-b606-1a115afbaeda")
    assert header.uuid_link == uuid.UUID(int=0)
    assert header.pack() == QEMU_64M_HEADER


def test_planned_header_equals_qemu_header_but_uuids():
    planned = plan_header(64 << 20, static=False)
    golden = Header.parse(QEMU_64M_HEADER)
    same_uuids = planned.__class__(
        **{
            **{f: getattr(planned, f) for f in planned.__dataclass_fields__},
            "uuid_image": golden.uuid_image,
            "uuid_last_snap": golden.uuid_last_snap,
        }
    )
    assert same_uuids.pack() == QEMU_64M_HEADER


# iotest 084, tests 1 to 7: (pokes, expected str() or None when the image must open).
CASES_084 = [
    (
        "maximum size",
        [(DISK_SIZE_AT, b"\x00\x00\x00\xf8\xff\xff\x01\x00"), (BLOCKS_IN_IMAGE_AT, b"\x80\xff\xff\x1f")],
        None,
    ),
    (
        "size too large",
        [(DISK_SIZE_AT, b"\x00\x00\x01\xf8\xff\xff\x01\x00"), (BLOCKS_IN_IMAGE_AT, b"\x80\xff\xff\x1f")],
        "Unsupported VDI image size (size is 0x1fffff8010000, max supported is 0x1fffff8000000)",
    ),
    (
        "blocks in image too small",
        [(DISK_SIZE_AT, b"\x00\x00\x00\x04\x00\x00\x00\x00"), (BLOCKS_IN_IMAGE_AT, b"\x3f\x00\x00\x00")],
        "unsupported VDI image (disk size 67108864, image bitmap has room for 66060288)",
    ),
    (
        "too many blocks",
        [(BLOCKS_IN_IMAGE_AT, b"\x81\xff\xff\x1f")],
        "unsupported VDI image (too many blocks 536870785, max is 536870784)",
    ),
    ("valid 64M", [(BLOCKS_IN_IMAGE_AT, b"\x40\x00\x00\x00"), (BLOCK_SIZE_AT, b"\x00\x00\x10\x00")], None),
    (
        "block size too small",
        [(BLOCK_SIZE_AT, b"\xff\xff\x0f\x00")],
        "unsupported VDI image (block size 1048575 is not 1048576)",
    ),
    (
        "block size too large",
        [(BLOCK_SIZE_AT, b"\x00\x00\x11\x00")],
        "unsupported VDI image (block size 1114112 is not 1048576)",
    ),
]


@pytest.mark.parametrize(("name", "pokes", "message"), CASES_084, ids=[c[0] for c in CASES_084])
def test_iotest_084_header_corruptions(name, pokes, message):
    buf = QEMU_64M_HEADER
    for offset, raw in pokes:
        buf = poke(buf, offset, raw)
    if message is None:
        Header.parse(buf)
        return
    with pytest.raises(BlockFormatError) as info:
        Header.parse(buf)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("offset", "raw", "cls", "message"),
    [
        (64, b"\x00\x00\x00\x00", CorruptImageError, "Image not in VDI format (bad signature 00000000)"),
        (68, struct.pack("<I", 0x00010000), UnsupportedFeatureError, "unsupported VDI image (version 1.0)"),
        (
            340,
            struct.pack("<I", 0x201),
            UnsupportedFeatureError,
            "unsupported VDI image (unaligned block map offset 0x201)",
        ),
        (
            344,
            struct.pack("<I", 0x401),
            UnsupportedFeatureError,
            "unsupported VDI image (unaligned data offset 0x401)",
        ),
        (
            360,
            struct.pack("<I", 4096),
            UnsupportedFeatureError,
            "unsupported VDI image (sector size 4096 is not 512)",
        ),
        (424, b"\x01" * 16, UnsupportedFeatureError, "unsupported VDI image (non-NULL link UUID)"),
        (440, b"\x01" * 16, UnsupportedFeatureError, "unsupported VDI image (non-NULL parent UUID)"),
        (
            76,
            struct.pack("<I", ImageType.DIFF),
            CorruptImageError,
            "differencing VDI image has a NULL link UUID",
        ),
    ],
)
def test_other_header_rules_give_qemu_messages(offset, raw, cls, message):
    with pytest.raises(cls) as info:
        Header.parse(poke(QEMU_64M_HEADER, offset, raw))
    assert str(info.value) == message


def test_odd_disk_size_rounds_up_to_sectors_like_qemu():
    header = Header.parse(poke(QEMU_64M_HEADER, DISK_SIZE_AT, struct.pack("<Q", (63 << 20) + 1)))
    assert header.virtual_size == (63 << 20) + 512
    assert header.pack()[DISK_SIZE_AT : DISK_SIZE_AT + 8] == struct.pack("<Q", (63 << 20) + 1)


def test_limits_are_qemus():
    assert BLOCKS_IN_IMAGE_MAX == 536870784
    assert DISK_SIZE_MAX == 0x1FFFFF8000000


@pytest.mark.parametrize("length", [0, 1, 71, 72, 511])
def test_short_buffers_are_corrupt_image_errors(length):
    with pytest.raises(CorruptImageError, match="truncated"):
        Header.parse(QEMU_64M_HEADER[:length])


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=600))
def test_random_bytes_never_raise_foreign_exceptions(data):
    try:
        header = Header.parse(data)
    except BlockFormatError:
        return
    assert header.pack() == bytes(data[:HEADER_STRUCT_SIZE])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(64, 511), st.integers(0, 255)), max_size=12))
def test_random_header_field_corruption_gives_block_format_errors_only(pokes):
    buf = bytearray(QEMU_64M_HEADER)
    for offset, value in pokes:
        buf[offset] = value
    try:
        header = Header.parse(bytes(buf))
    except BlockFormatError:
        return
    assert header.pack() == bytes(buf)
