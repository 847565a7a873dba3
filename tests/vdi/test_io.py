"""Reads, writes, discard, write-zeroes and map of VDI images through blockfmt alone."""

from __future__ import annotations

import os
import random

import pytest

import blockfmt
from blockfmt.errors import BlockFormatError, CorruptImageError, UnsupportedFeatureError
from blockfmt_vdi.constants import BMAP_DISCARDED, BMAP_UNALLOCATED
from blockfmt_vdi.image import VdiDriver

from .conftest import MIB, allocated_count, apply_to_reference, entries, random_writes

SIZE = 8 * MIB + 300 * 1024  # not a whole number of blocks


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "t.vdi"
    blockfmt.create(path, "vdi", SIZE)
    return path


def test_read_spanning_two_blocks_is_not_served_from_the_first_blocks_offset(image):
    """NOTES pitfall 2 (dissect VDI): each block of a spanning read must come from its own offset."""
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(MIB, b"\xbb" * MIB)  # virtual block 1 lands first in the file
        img.write_at(0, b"\xaa" * MIB)  # virtual block 0 second: the blocks are stored swapped
        assert entries(image, 2) == [1, 0]
        got = img.read_at(MIB - 5000, 9000)
    assert got == b"\xaa" * 5000 + b"\xbb" * 4000


def test_random_unaligned_workload_reads_back(image):
    reference = bytearray(SIZE)
    writes = random_writes(seed=4, size=SIZE, count=40, max_length=2 * MIB)
    apply_to_reference(reference, writes)
    with blockfmt.open(image, read_only=False) as img:
        for w in writes:
            img.write_at(w.offset, bytes([w.pattern]) * w.length)
    rng = random.Random(5)
    with blockfmt.open(image) as img:
        assert img.read_at(0, SIZE) == reference
        for _ in range(200):
            length = rng.randint(1, 3 * MIB)
            offset = rng.randint(0, SIZE - length)
            assert img.read_at(offset, length) == reference[offset : offset + length]


def test_unwritten_blocks_read_as_zeros_and_map_as_zero(image):
    with blockfmt.open(image) as img:
        assert img.read_at(0, SIZE) == bytes(SIZE)
        assert [(e.offset, e.length, e.data, e.zero) for e in img.map()] == [(0, SIZE, False, True)]


def test_allocating_whole_blocks_is_one_data_write_one_header_one_map_write(image, counting_file):
    file = counting_file(image)
    driver = VdiDriver(file, read_only=False)
    payload = memoryview(os.urandom(4 * MIB))
    driver.write(2 * MIB, payload)
    data_offset = driver.header.offset_data
    assert file.writes == [(data_offset, 4 * MIB), (0, 512), (0x200 + 2 * 4, 16)]
    assert entries(image, 9) == [BMAP_UNALLOCATED] * 2 + [0, 1, 2, 3] + [BMAP_UNALLOCATED] * 3
    assert allocated_count(image) == 4


def test_large_read_of_contiguous_blocks_is_one_data_read(image, counting_file):
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(0, os.urandom(8 * MIB))
    file = counting_file(image, read_only=True)
    driver = VdiDriver(file, read_only=True)
    file.reads.clear()
    buf = bytearray(8 * MIB - 1000)
    driver.readinto(500, memoryview(buf))
    data_reads = [r for r in file.reads if r[0] >= driver.header.offset_data]
    assert data_reads == [(driver.header.offset_data + 500, len(buf))]


def test_partial_block_allocation_pads_with_zeros(image):
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(MIB + 100, b"\x11" * 10)
    with open(image, "rb") as f:
        f.seek(0, os.SEEK_END)
        assert f.tell() == 0x400 + MIB  # one whole block appended
    with blockfmt.open(image) as img:
        assert img.read_at(MIB, MIB) == bytes(100) + b"\x11" * 10 + bytes(MIB - 110)


def test_small_allocating_write_at_end_of_file_stays_sparse(image):
    """A 4 KiB write into a new block extends the file over the block and writes only 4 KiB."""
    before = os.stat(image).st_blocks
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(5 * MIB + 4096, b"\xab" * 4096)
    grown = (os.stat(image).st_blocks - before) * 512
    assert 0 < grown <= 64 * 1024, f"{grown} bytes allocated for a 4 KiB write"
    with blockfmt.open(image) as img:
        assert img.read_at(5 * MIB, MIB) == bytes(4096) + b"\xab" * 4096 + bytes(MIB - 8192)


def test_write_to_partial_last_block_of_odd_size_disk(image):
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(SIZE - 7, b"1234567")
        assert img.read_at(SIZE - 10, 10) == b"\0\0\x001234567"


def test_discard_whole_blocks_marks_them_discarded_and_keeps_the_data_area_dense(image):
    with blockfmt.open(image, read_only=False) as img:
        for block in range(5):
            img.write_at(block * MIB, bytes([block + 1]) * MIB)
        img.discard(MIB - 1, 2 * MIB + 2)  # whole blocks 1 and 2 only
        assert img.read_at(0, MIB) == b"\x01" * MIB
        assert img.read_at(MIB, 2 * MIB) == bytes(2 * MIB)
        assert img.read_at(3 * MIB, 2 * MIB) == b"\x04" * MIB + b"\x05" * MIB
        written = img.map()
    bmap = entries(image, 5)
    assert bmap[1] == bmap[2] == BMAP_DISCARDED
    assert sorted(bmap[i] for i in (0, 3, 4)) == [0, 1, 2]  # blocks 3 and 4 moved into the freed slots
    assert allocated_count(image) == 3
    assert os.path.getsize(image) == 0x400 + 3 * MIB
    assert [(e.offset, e.length, e.data) for e in written if not e.data] == [
        (MIB, 2 * MIB, False),
        (5 * MIB, SIZE - 5 * MIB, False),
    ]


def test_discard_then_rewrite_reuses_the_freed_space(image):
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(0, b"\x01" * 4 * MIB)
        img.discard(0, 4 * MIB)
        assert os.path.getsize(image) == 0x400
        img.write_at(2 * MIB, b"\x02" * MIB)
    assert entries(image, 4) == [BMAP_DISCARDED, BMAP_DISCARDED, 0, BMAP_DISCARDED]


def test_discard_of_a_partial_block_changes_nothing(image):
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(0, b"\x07" * MIB)
        img.discard(1, MIB - 1)
        assert img.read_at(0, MIB) == b"\x07" * MIB


def test_write_zeroes_does_not_allocate_and_zeroes_allocated_bytes_in_place(image):
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(MIB, b"\x05" * MIB)
        img.write_zeroes(0, 3 * MIB)
        assert entries(image, 3) == [BMAP_UNALLOCATED, 0, BMAP_UNALLOCATED]
        assert img.read_at(0, 3 * MIB) == bytes(3 * MIB)
        img.write_at(4 * MIB, b"\x06" * MIB)
        img.write_zeroes(4 * MIB + 10, 20)
        assert img.read_at(4 * MIB, 40) == b"\x06" * 10 + bytes(20) + b"\x06" * 10


def test_write_zeroes_with_unmap_discards_whole_blocks(image):
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(0, b"\x05" * 3 * MIB)
        img.write_zeroes(MIB - 10, MIB + 20, unmap=True)
        assert img.read_at(MIB - 20, MIB + 40) == b"\x05" * 10 + bytes(MIB + 20) + b"\x05" * 10
    assert entries(image, 3)[1] == BMAP_DISCARDED


def test_static_image_is_preallocated_and_ignores_discard(tmp_path):
    path = tmp_path / "s.vdi"
    blockfmt.create(path, "vdi", 64 * MIB, static=True)
    assert os.path.getsize(path) == 67109888  # iotest 084
    assert entries(path, 64) == list(range(64))
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(MIB + 3, b"\x09" * 5)
        img.discard(0, 64 * MIB)
        assert img.read_at(MIB, 10) == b"\0\0\0" + b"\x09" * 5 + b"\0\0"
        extents = img.map()
    assert entries(path, 64) == list(range(64))
    assert all(e.data for e in extents)
    assert any(e.zero for e in extents)  # the file's holes show as zero data, as in qemu-img map


def test_map_reports_runs_with_host_offsets(image):
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(3 * MIB, b"\x01" * 2 * MIB)
        img.write_at(0, b"\x02")
        extents = [(e.offset, e.length, e.data, e.zero, e.host_offset) for e in img.map()]
    assert extents == [
        (0, MIB, True, False, 0x400 + 2 * MIB),
        (MIB, 2 * MIB, False, True, None),
        (3 * MIB, 2 * MIB, True, False, 0x400),
        (5 * MIB, SIZE - 5 * MIB, False, True, None),
    ]


def test_block_past_end_of_file_is_an_error_not_wrong_data(image):
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(0, b"\x01" * 2 * MIB)
    os.truncate(image, 0x400 + MIB + 4096)
    with blockfmt.open(image, read_only=False) as img:
        assert img.read_at(0, MIB) == b"\x01" * MIB
        with pytest.raises(CorruptImageError, match="beyond the end of the file"):
            img.read_at(MIB, MIB)
        with pytest.raises(CorruptImageError, match="beyond the end of the file"):
            img.write_at(MIB + 8192, b"x")
    assert os.path.getsize(image) == 0x400 + MIB + 4096  # the refused write changed nothing


def test_truncated_block_map_is_an_error(image):
    os.truncate(image, 0x200 + 8)
    with blockfmt.open(image) as img:
        assert img.read_at(0, 10) == bytes(10)
        with pytest.raises(CorruptImageError, match="block map entry 2 lies beyond the end of the file"):
            img.read_at(2 * MIB, 10)


@pytest.mark.parametrize("length", [0, 100, 300])
def test_truncated_header_is_a_block_format_error(image, length):
    os.truncate(image, length)
    with pytest.raises(BlockFormatError):
        blockfmt.open(image, format="vdi")


def test_file_cut_inside_the_reserved_header_tail_opens_but_has_no_map(image):
    os.truncate(image, 511)
    with blockfmt.open(image, format="vdi") as img:
        with pytest.raises(CorruptImageError, match="block map entry 0 lies beyond the end of the file"):
            img.read_at(0, 1)


def test_parent_uuid_outside_a_differencing_image_is_refused_as_qemu_does(image):
    with open(image, "r+b") as f:
        f.seek(440)
        f.write(os.urandom(16))
    with pytest.raises(UnsupportedFeatureError, match=r"^unsupported VDI image \(non-NULL parent UUID\)$"):
        blockfmt.open(image)


def test_probe_claims_vdi_with_qemus_rule(image, tmp_path):
    assert blockfmt.probe(image) == "vdi"
    other = tmp_path / "x.img"
    other.write_bytes(image.read_bytes()[:400])  # a whole header sector is needed
    assert blockfmt.probe(other) == "raw"


def test_info_reports_block_size_as_cluster_size(image):
    with blockfmt.open(image) as img:
        assert img.info().cluster_size == MIB
        assert img.size == SIZE


def test_overlapping_layout_opens_read_only_but_not_for_writing(image):
    with open(image, "r+b") as f:  # iotest 084 test 1: blocks_in_image far beyond the map
        f.seek(368)
        f.write(b"\x00\x00\x00\xf8\xff\xff\x01\x00")
        f.seek(384)
        f.write(b"\x80\xff\xff\x1f")
    with blockfmt.open(image) as img:
        assert img.size == 562949819203584
    with pytest.raises(CorruptImageError, match="refusing to open it for writing"):
        blockfmt.open(image, read_only=False)


def test_discard_in_an_image_with_spare_blocks_zeroes_in_place_and_keeps_the_count(image):
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(0, b"\x03" * 3 * MIB)
    os.truncate(image, 0x400 + 4 * MIB)  # a spare block after the last counted one (a crash leftover)
    with blockfmt.open(image, read_only=False) as img:
        img.discard(MIB, MIB)
        assert img.read_at(0, 3 * MIB) == b"\x03" * MIB + bytes(MIB) + b"\x03" * MIB
        assert img.check().clean
    assert entries(image, 3) == [0, 1, 2] and allocated_count(image) == 3
