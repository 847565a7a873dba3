"""Differencing VHDX and VDI chains built by blockfmt, read back and cross-checked by two peers.

QEMU cannot open either kind, so every chain is read by blockfmt, libvhdi (VHDX) and
dissect.hypervisor (VHDX and VDI) and compared with the model of the writes. dissect's VHDX reader
has a bitmap bug: ``_iter_partial_runs`` walks ``range(start_idx, min(length, 8))`` of every byte
that is neither all ones nor all zeros, so a sector run that starts past bit 0 of a byte (or a
request ending inside one) loses or repeats sectors. Where dissect disagrees, the test requires that
the read starts inside a bitmap byte and that libvhdi agrees with the model; each test prints its
verdicts (``-s``) for the counts in the closing note.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import BackingChainError

from .builders import Chain, MiB, build_chain
from .peers import read_dissect_vdi, read_dissect_vhdx, read_libvhdi

SIZE = 8 * MiB


def layer_writes(depth: int, sector: int, block: int) -> list[tuple[int, int, int]]:
    """Writes of layer *depth*: sector runs starting and ending mid-byte of the bitmap (3..12,
    5..40), an unaligned byte range, one run across a block boundary, one overlapping the layer below."""
    byte = 0x10 * (depth + 1)
    last = min(block, SIZE)
    writes = [
        (depth * sector + 3 * sector, 10 * sector, byte + 1),
        (5 * sector + 7 + depth * 512, 100 + 13 * depth, byte + 2),
        (min(SIZE, 2 * block) - 2 * sector - depth * sector, 5 * sector, byte + 3),
        ((depth * 3 + 1) * MiB % SIZE + 40 * sector, 33 * sector, byte + 4),
    ]
    if depth == 0:
        writes.append((last - 64 * 1024, 64 * 1024, 0x0F))
    return [(o, min(n, SIZE - o), b) for o, n, b in writes if o < SIZE]


SHAPES = [
    (children, sector, block)
    for children, (sector, block) in itertools.product(
        (1, 2, 3, 4), ((512, 1 * MiB), (4096, 1 * MiB), (512, 32 * MiB), (4096, 256 * MiB), (512, 256 * MiB))
    )
]


def vhdx_chain(tmp_path: Path, children: int, sector: int, block: int) -> Chain:
    layers = [layer_writes(depth, sector, block) for depth in range(children + 1)]
    return build_chain(
        tmp_path, "vhdx", SIZE, layers, suffix="avhdx", block_size=block, logical_sector_size=sector
    )


@pytest.mark.parametrize(("children", "sector", "block"), SHAPES)
def test_vhdx_chain_reads_as_the_model_and_as_both_peers(tmp_path, children, sector, block):
    """Whole-disk reads, and reads starting at sector 3 (bit 3 of a bitmap byte), in all three readers."""
    chain = vhdx_chain(tmp_path, children, sector, block)
    with blockfmt.open(chain.top) as image:
        assert len(image.backing_chain()) == children + 1
        assert image.read_at(0, SIZE) == chain.expected
    verdicts = []
    for offset in (0, 3 * sector):
        expected = chain.expected[offset:]
        assert read_libvhdi(chain.paths, SIZE - offset, offset) == expected
        if read_dissect_vhdx(chain.top, SIZE - offset, offset) == expected:
            verdicts.append("agrees")
        else:  # its bitmap bug (see test_dissect_bitmap_bug): a layer read from inside a bitmap byte
            # goes wrong; from bit 0 that happens only below a child, whose runs end mid-byte
            assert offset // sector % 8 or children >= 2, "dissect differs where no read starts mid-byte"
            verdicts.append("bitmap bug")
    shape = f"children={children} sector={sector} block={block}"
    print(f"peer-agreement vhdx {shape}: libvhdi agrees, dissect {verdicts}")


@pytest.mark.parametrize("children", [1, 2, 3, 4])
def test_vdi_chain_reads_as_the_model_and_as_dissect(tmp_path, children):
    layers = [layer_writes(depth, 512, MiB) for depth in range(children + 1)]
    chain = build_chain(tmp_path, "vdi", SIZE, layers)
    with blockfmt.open(chain.top) as image:
        assert [i.format for i in image.backing_chain()] == ["vdi"] * (children + 1)
        assert image.read_at(0, SIZE) == chain.expected
    assert read_dissect_vdi(chain.paths, SIZE) == chain.expected
    print(f"peer-agreement vdi children={children}: dissect agrees")


def test_dissect_bitmap_bug(tmp_path):
    """dissect's ``_iter_partial_runs`` walks ``range(start_idx, min(length, 8))`` of each mixed byte
    and never resets ``start_idx``: 10 present sectors from bit 3 come out as 7. Its reads are
    4 KiB aligned, so a read starts mid-byte only below a child: here the top holds sectors 0-4, so
    the middle layer is read from sector 5, inside its run 3-12. blockfmt and libvhdi read it right.
    """
    from dissect.hypervisor.disk.vhdx import _iter_partial_runs

    assert list(_iter_partial_runs(bytes([0b1111_1000, 0b0001_1111]), 3, 10)) == [(1, 7)]  # right: [(1, 10)]
    layers = [[(0, SIZE, 0xAA)], [(3 * 512, 10 * 512, 0xBB)], [(0, 5 * 512, 0xCC)]]
    chain = build_chain(tmp_path, "vhdx", SIZE, layers, suffix="avhdx")
    expected = chain.expected[: 16 * 512]
    with blockfmt.open(chain.top) as image:
        assert image.read_at(0, 16 * 512) == expected
    assert read_libvhdi(chain.paths, 16 * 512) == expected
    assert read_dissect_vhdx(chain.top, 16 * 512) != expected


def test_map_reports_the_depth_of_every_range(tmp_path):
    layers = [[(0, MiB, 1)], [(MiB, MiB, 2)], [(2 * MiB + 512, 512, 3)]]
    chain = build_chain(tmp_path, "vhdx", SIZE, layers, block_size=MiB)
    with blockfmt.open(chain.top) as image:
        extents = [(e.offset, e.length, e.depth, e.present, e.data) for e in image.map()]
    assert extents == [
        (0, MiB, 2, True, True),
        (MiB, MiB, 1, True, True),
        (2 * MiB, 512, 2, True, False),  # the base's ZERO block
        (2 * MiB + 512, 512, 0, True, True),
        (2 * MiB + 1024, SIZE - 2 * MiB - 1024, 2, True, False),
    ]


def test_vdi_partial_write_copies_the_parent_block_up(tmp_path):
    chain = build_chain(tmp_path, "vdi", SIZE, [[(0, SIZE, 0x5A)], [(MiB + 100, 10, 0x01)]])
    with blockfmt.open(chain.top, open_backing=False) as alone:  # the child alone holds the whole block
        block = alone.read_at(MiB, MiB)
    assert block == chain.expected[MiB : 2 * MiB]
    with blockfmt.open(chain.top, open_backing=False) as alone:
        assert alone.read_at(0, MiB) == bytes(MiB)  # block 0 was never written in the child


def test_missing_parent_is_one_error_naming_the_path_tried(tmp_path):
    chain = build_chain(tmp_path, "vhdx", SIZE, [[], []], suffix="avhdx")
    chain.paths[0].rename(tmp_path / "moved.vhdx")
    with pytest.raises(BackingChainError) as info:
        blockfmt.open(chain.top)
    assert str(info.value) == (
        f"Could not open backing file: Could not open '{chain.paths[0]}': No such file or directory"
    )
    with blockfmt.open(chain.top, backing=tmp_path / "moved.vhdx") as image:
        assert image.read_at(0, SIZE) == chain.expected


def test_modified_parent_is_refused_unless_the_id_mismatch_is_ignored(tmp_path):
    chain = build_chain(tmp_path, "vhdx", SIZE, [[(0, 4096, 1)], [(4096, 4096, 2)]], suffix="avhdx")
    with blockfmt.open(chain.paths[0], read_only=False) as parent:
        parent.write_at(0, b"\x09" * 512)  # a new DataWriteGuid
    with pytest.raises(
        BackingChainError,
        match=r"^Backing file of '.*layer1.avhdx' does not match: parent '.*layer0.vhdx' has DataWriteGuid",
    ):
        blockfmt.open(chain.top)
    with blockfmt.open(chain.top, ignore_id_mismatch=True) as image:
        assert image.read_at(0, 512) == b"\x09" * 512
        assert image.read_at(4096, 4096) == b"\x02" * 4096


def test_vdi_parent_found_by_uuid_and_a_wrong_parent_refused(tmp_path):
    chain = build_chain(tmp_path, "vdi", SIZE, [[(0, MiB, 1)], [(MiB, 512, 2)]])
    snapshots = tmp_path / "Snapshots"
    snapshots.mkdir()
    moved = snapshots / "{child}.vdi"
    chain.top.rename(moved)  # VirtualBox's layout: the base one directory above the snapshots
    with blockfmt.open(moved) as image:
        assert image.backing_name == "../layer0.vdi"
        assert image.read_at(0, SIZE) == chain.expected
    blockfmt.create(tmp_path / "other.vdi", "vdi", SIZE)
    with pytest.raises(BackingChainError, match=r"has image UUID .* but .* links to"):
        blockfmt.open(moved, backing=tmp_path / "other.vdi")


def test_loops_are_refused(tmp_path):
    chain = build_chain(tmp_path, "vhdx", SIZE, [[], []], suffix="avhdx")
    chain.paths[0].unlink()
    chain.paths[0].symlink_to(chain.top.name)  # the parent's name now leads back to the child
    with pytest.raises(BackingChainError, match=r"^Backing chain loop: '.*layer0.vhdx' is its own ancestor$"):
        blockfmt.open(chain.top)


def test_zeroes_and_discard_in_a_child(tmp_path):
    chain = build_chain(tmp_path, "vhdx", SIZE, [[(0, SIZE, 0x77)], []], suffix="avhdx", block_size=MiB)
    with blockfmt.open(chain.top, read_only=False) as image:
        image.write_zeroes(MiB - 512, 2 * MiB + 1024)  # partial ends, one whole block between
        image.discard(4 * MiB, MiB)  # a child keeps the parent's bytes
    expected = bytearray(chain.expected)
    expected[MiB - 512 : 3 * MiB + 512] = bytes(2 * MiB + 1024)
    with blockfmt.open(chain.top) as image:
        assert image.read_at(0, SIZE) == bytes(expected)
    assert read_libvhdi(chain.paths, SIZE) == bytes(expected)


def test_hyper_v_image_as_parent(tmp_path, sample_image):
    parent = sample_image("discutils-btrfs.vhdx")
    child = tmp_path / "child.avhdx"
    blockfmt.create(child, "vhdx", None, backing_file=parent.name)
    with blockfmt.open(parent) as image:
        size = image.size
        base = bytearray(image.read_at(0, 64 * MiB))
    with blockfmt.open(child, read_only=False) as image:
        image.write_at(1 * MiB + 1536, b"\xc3" * 5000)
        image.write_at(40 * MiB - 512, b"\xc4" * 1024)
    base[MiB + 1536 : MiB + 6536] = b"\xc3" * 5000
    base[40 * MiB - 512 : 40 * MiB + 512] = b"\xc4" * 1024
    with blockfmt.open(child) as image:
        assert image.size == size
        assert image.read_at(0, 64 * MiB) == bytes(base)
    assert read_libvhdi([parent, child], 64 * MiB) == bytes(base)


@pytest.mark.parametrize("new_size", [8192 * MiB, 48 * MiB])
def test_vhdx_child_resized_then_written_in_one_session(tmp_path, new_size):
    """A resize replaces the BAT; the child's sector bitmaps must read the new one (they kept the
    old BatTable: the next write past the old size failed with an IndexError)."""
    parent, child = tmp_path / "p.vhdx", tmp_path / "c.avhdx"
    blockfmt.create(parent, "vhdx", 64 * MiB, block_size=MiB)
    with blockfmt.open(parent, read_only=False) as image:
        image.write_at(0, b"\xaa" * (64 * MiB))
    blockfmt.create(child, "vhdx", None, backing_file=parent.name)
    writes = [
        (MiB + 100, b"\x11" * 5000),
        (new_size - 3 * MiB + 7, b"\x22" * (2 * MiB)),
        (2 * MiB, b"\x33" * 700),
    ]
    with blockfmt.open(child, read_only=False) as image:
        image.write_at(*writes[0])
        image.resize(new_size, shrink=True)
        for offset, data in writes[1:]:
            image.write_at(offset, data)
    with blockfmt.open(child) as image:
        assert image.size == new_size and image.check().clean
        for offset, data in writes:
            assert image.read_at(offset, len(data)) == data
        assert image.read_at(3 * MiB, 4096) == b"\xaa" * 4096
