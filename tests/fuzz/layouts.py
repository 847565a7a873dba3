"""Where VHDX and VDI images keep their structures: the fuzzer's own, independent model.

The fuzzer does not ask the plugin under test where its structures are (a plugin that misreads the
region table must not steer its own fuzzing); these few offsets come from MS-VHDX v1.00 §2 and
QEMU's ``vdi.c`` ``VdiHeader``.
"""

from __future__ import annotations

import struct

from blockfmt.testing.fuzz import ChecksumSpan, HotRegion, Layout, SparseBytes

KiB = 1024
MiB = 1024 * KiB

# MS-VHDX §2.1: fixed places in the first MiB
VHDX_FILE_ID_LENGTH = 8 + 512  # signature + creator (UTF-16, 256 characters)
VHDX_HEADER_OFFSETS = (64 * KiB, 128 * KiB)
VHDX_HEADER_SIZE = 4 * KiB
VHDX_REGION_TABLE_OFFSETS = (192 * KiB, 256 * KiB)
VHDX_REGION_TABLE_SIZE = 64 * KiB
VHDX_CHECKSUM_FIELD = 4
# §2.2.2 header fields: (offset, width)
VHDX_HEADER_FIELDS = ((4, 4), (8, 8), (64, 2), (66, 2), (68, 4), (72, 8))
VHDX_LOG_OFFSET_FIELD = struct.Struct("<IQ")  # log length (u32 at 68), log offset (u64 at 72)
VHDX_TABLE_HEADER_SIZE = 16
VHDX_TABLE_ENTRY_SIZE = 32
VHDX_REGION_ENTRY = struct.Struct("<16sQII")  # guid, file offset, length, required
VHDX_BAT_GUID = bytes.fromhex("6677c22d23f600429d64115e9bfd4a08")
VHDX_METADATA_GUID = bytes.fromhex("06a27c8b90479a4bb8fe575f050f886e")
VHDX_METADATA_HEADER_SIZE = 32
VHDX_METADATA_ENTRY = struct.Struct("<16sIII4x")  # item id, offset, length, flags
VHDX_METADATA_COUNT_FIELD = 10
VHDX_BAT_ENTRY_SIZE = 8
VHDX_HOT_BAT_BYTES = 4 * KiB
# §2.3.1: log entry header, descriptors after it
VHDX_LOG_SIGNATURE = b"loge"
VHDX_LOG_ENTRY_FIELDS = ((4, 4), (8, 4), (12, 4), (16, 8), (24, 4), (48, 8), (56, 8))
VHDX_LOG_DESCRIPTOR_FIELDS = ((0, 4), (4, 4), (8, 8), (16, 8), (24, 8))
VHDX_LOG_HEADER_SIZE = 64
VHDX_LOG_DESCRIPTOR_SIZE = 32
VHDX_LOG_SECTOR = 4 * KiB
VHDX_MAX_LOG_ENTRIES_MODELLED = 16

# vdi.c VdiHeader: (offset, width) of every integer field
VDI_HEADER_SIZE = 512
VDI_HEADER_FIELDS = (
    (64, 4), (68, 4), (72, 4), (76, 4), (80, 4), (340, 4), (344, 4), (348, 4), (352, 4), (356, 4),
    (360, 4), (364, 4), (368, 8), (376, 4), (380, 4), (384, 4), (388, 4), (424, 8), (440, 8),
)  # fmt: skip
VDI_BMAP_FIELDS = struct.Struct("<II")  # offset_bmap, offset_data at 340
VDI_BLOCKS_FIELD = struct.Struct("<I")  # blocks_in_image at 384
VDI_BMAP_ENTRY_SIZE = 4
VDI_HOT_BMAP_BYTES = 4 * KiB


def _u(fmt: struct.Struct, store: SparseBytes, offset: int) -> tuple:
    return fmt.unpack(store.read(offset, fmt.size))


def vhdx_layout(store: SparseBytes) -> Layout:
    """Headers, region tables, metadata table and items, the BAT's first entries, log entries."""
    regions = [HotRegion("file identifier", 0, VHDX_FILE_ID_LENGTH)]
    checksums = []
    for n, off in enumerate(VHDX_HEADER_OFFSETS, 1):
        regions.append(HotRegion(f"header {n}", off, VHDX_HEADER_SIZE, VHDX_HEADER_FIELDS))
        checksums.append(ChecksumSpan(off, VHDX_HEADER_SIZE, off + VHDX_CHECKSUM_FIELD))
    entries = []
    for n, off in enumerate(VHDX_REGION_TABLE_OFFSETS, 1):
        (count,) = struct.unpack("<I", store.read(off + 8, 4))
        count = min(count, 16)
        fields = [(8, 4)]
        for i in range(count):
            base = VHDX_TABLE_HEADER_SIZE + i * VHDX_TABLE_ENTRY_SIZE
            fields += [(base + 16, 8), (base + 24, 4), (base + 28, 4)]
            if n == 1:
                entries.append(_u(VHDX_REGION_ENTRY, store, off + base))
        length = VHDX_TABLE_HEADER_SIZE + count * VHDX_TABLE_ENTRY_SIZE
        regions.append(HotRegion(f"region table {n}", off, length, tuple(fields)))
        checksums.append(ChecksumSpan(off, VHDX_REGION_TABLE_SIZE, off + VHDX_CHECKSUM_FIELD))
    for guid, offset, length, _required in entries:
        if guid == VHDX_BAT_GUID:
            hot = min(length, VHDX_HOT_BAT_BYTES)
            fields = tuple((i, VHDX_BAT_ENTRY_SIZE) for i in range(0, hot, VHDX_BAT_ENTRY_SIZE))
            regions.append(HotRegion("BAT", offset, hot, fields))
        elif guid == VHDX_METADATA_GUID:
            regions += _vhdx_metadata(store, offset)
    log_length, log_offset = _u(VHDX_LOG_OFFSET_FIELD, store, VHDX_HEADER_OFFSETS[0] + 68)
    log_regions, log_checksums = _vhdx_log(store, log_offset, log_length)
    return Layout(tuple(regions + log_regions), tuple(checksums + log_checksums))


def _vhdx_metadata(store: SparseBytes, offset: int) -> list[HotRegion]:
    (count,) = struct.unpack("<H", store.read(offset + VHDX_METADATA_COUNT_FIELD, 2))
    count = min(count, 16)
    fields = [(VHDX_METADATA_COUNT_FIELD, 2)]
    regions = []
    for i in range(count):
        base = VHDX_METADATA_HEADER_SIZE + i * VHDX_TABLE_ENTRY_SIZE
        fields += [(base + 16, 4), (base + 20, 4), (base + 24, 4)]
        _guid, item_offset, item_length, _flags = _u(VHDX_METADATA_ENTRY, store, offset + base)
        if 0 < item_length <= KiB:
            item_fields = tuple((j, 4) for j in range(0, item_length - item_length % 4, 4))
            regions.append(HotRegion(f"metadata item {i}", offset + item_offset, item_length, item_fields))
    length = VHDX_METADATA_HEADER_SIZE + count * VHDX_TABLE_ENTRY_SIZE
    return [HotRegion("metadata table", offset, length, tuple(fields)), *regions]


def _vhdx_log(
    store: SparseBytes, log_offset: int, log_length: int
) -> tuple[list[HotRegion], list[ChecksumSpan]]:
    regions: list[HotRegion] = []
    checksums: list[ChecksumSpan] = []
    if not log_length or log_offset + log_length > store.size:
        return regions, checksums
    pos = 0
    while pos < log_length and len(regions) < VHDX_MAX_LOG_ENTRIES_MODELLED:
        head = store.read(log_offset + pos, VHDX_LOG_HEADER_SIZE)
        if head[:4] != VHDX_LOG_SIGNATURE:
            break
        (entry_length,) = struct.unpack_from("<I", head, 8)
        (descriptors,) = struct.unpack_from("<I", head, 24)
        if not entry_length or entry_length % VHDX_LOG_SECTOR or pos + entry_length > log_length:
            break
        fields = list(VHDX_LOG_ENTRY_FIELDS)
        for d in range(min(descriptors, 8)):
            base = VHDX_LOG_HEADER_SIZE + d * VHDX_LOG_DESCRIPTOR_SIZE
            fields += [(base + rel, width) for rel, width in VHDX_LOG_DESCRIPTOR_FIELDS]
        hot = VHDX_LOG_HEADER_SIZE + min(descriptors, 8) * VHDX_LOG_DESCRIPTOR_SIZE
        start = log_offset + pos
        regions.append(HotRegion(f"log entry @{pos}", start, min(hot, entry_length), tuple(fields)))
        checksums.append(ChecksumSpan(start, entry_length, start + VHDX_CHECKSUM_FIELD))
        pos += entry_length
    return regions, checksums


def vdi_layout(store: SparseBytes) -> Layout:
    """The 512-byte header and the block map's first entries."""
    regions = [HotRegion("header", 0, VDI_HEADER_SIZE, VDI_HEADER_FIELDS)]
    offset_bmap, _offset_data = _u(VDI_BMAP_FIELDS, store, 340)
    (blocks,) = _u(VDI_BLOCKS_FIELD, store, 384)
    hot = min(blocks * VDI_BMAP_ENTRY_SIZE, VDI_HOT_BMAP_BYTES)
    if hot and offset_bmap + hot <= store.size:
        fields = tuple((i, VDI_BMAP_ENTRY_SIZE) for i in range(0, hot, VDI_BMAP_ENTRY_SIZE))
        regions.append(HotRegion("block map", offset_bmap, hot, fields))
    return Layout(tuple(regions))


def raw_layout(store: SparseBytes) -> Layout:
    """Raw has no structure; the first 4 KiB stand in, to exercise the harness."""
    return Layout((HotRegion("head", 0, min(store.size, 4 * KiB)),))


LAYOUTS = {"vhdx": vhdx_layout, "vdi": vdi_layout, "raw": raw_layout}
