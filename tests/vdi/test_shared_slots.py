"""check -r all on maps whose entries share data blocks by the million (issue 19).

The coverage-guided fuzzer found VDI maps of 16 million entries all naming data slot 0 (an 8 MiB disk
whose header claims 16 million blocks, the map a stretch of zeros): giving every later user its own
copy would write a block per entry, so the repair used to give up and leave the map shared. A later
user that no reader can tell from a dropped entry is now dropped instead: its block lies past the
end of the virtual disk (neither blockfmt nor QEMU reads it), or the shared block holds only zeros
(it reads zeros either way). Copies are made only for the rest, at most MAX_SPLIT_BLOCKS of them.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from pathlib import Path

import pytest

import blockfmt
import blockfmt_vdi.check
from blockfmt.errors import CorruptImageError
from blockfmt.fileio import OsImageFile
from blockfmt.testing.qemu import run_tool
from blockfmt_vdi.bmap import PAGE_ENTRIES, BlockMap
from blockfmt_vdi.constants import BMAP_DISCARDED, BMAP_UNALLOCATED
from blockfmt_vdi.structs import Header

from .conftest import MIB, allocated_count, entries
from .test_repair_dense import blocks_of, corrupt, make, repair

U = BMAP_UNALLOCATED


def shrink_disk(path: Path, disk_blocks: int) -> None:
    """Make the virtual disk *disk_blocks* blocks while the map keeps all its entries (QEMU and
    blockfmt read only the disk; the map may be larger)."""
    with open(path, "r+b") as f:
        header = Header.parse(f.read(512))
        f.seek(0)
        f.write(dataclasses.replace(header, disk_size=disk_blocks * MIB).pack())


def test_users_past_the_virtual_disk_are_dropped_not_copied(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(blockfmt_vdi.check, "MAX_SPLIT_BLOCKS", 1)
    path = make(tmp_path, 8, 2)  # slots 0 and 1 hold bytes 1 and 2
    shrink_disk(path, 3)
    corrupt(path, bmap=[0, 1, U, 1, 1, 0, 1, 0])  # blocks 3..7 lie past the 3-block disk
    repaired, again = repair(path)
    assert repaired.messages[:5] == ["Repairing block index 1 also used by 1"] * 2 + [
        "Repairing block index 0 also used by 0",
        "Repairing block index 1 also used by 1",
        "Repairing block index 0 also used by 0",
    ]
    assert (repaired.corruptions, again.corruptions, again.messages) == (0, 0, [])
    assert entries(path, 8) == [0, 1, U, U, U, U, U, U]
    assert blocks_of(path, 3) == [b"\x01", b"\x02", b"\x00"]
    assert allocated_count(path) == 2 and path.stat().st_size == 0x400 + 2 * MIB


def test_users_of_a_block_of_zeros_are_dropped_however_many(tmp_path: Path) -> None:
    """More users than MAX_SPLIT_BLOCKS inside the disk, of a slot holding zeros: each read zeros
    before and reads zeros after, and the file does not grow by a block per user."""
    users = blockfmt_vdi.check.MAX_SPLIT_BLOCKS * 3
    path = make(tmp_path, users + 2, 1)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(MIB, bytes(MIB))  # slot 1: a block of zeros, allocated
    corrupt(path, bmap=[0, *[1] * users, U])
    repaired, again = repair(path)
    assert (repaired.corruptions, repaired.corruptions_fixed) == (0, users)  # users - 1, and the count
    assert (again.corruptions, again.messages) == (0, [])
    assert entries(path, users + 2) == [0, 1, *[U] * (users - 1), U]
    assert blocks_of(path, users + 2) == [b"\x01", *[b"\x00"] * (users + 1)]
    offset_data = Header.parse(path.read_bytes()[:512]).offset_data
    assert allocated_count(path) == 2 and path.stat().st_size == offset_data + 2 * MIB


def test_differencing_image_drops_them_as_discarded(tmp_path: Path) -> None:
    """In a child, unallocated reads the parent: the dropped users of a block of zeros are
    discarded instead, so they keep reading zeros, not the parent's data."""
    parent = make(tmp_path, 4, 4)
    child = tmp_path / "child.vdi"
    blockfmt.create(child, "vdi", None, backing_file=str(parent), backing_fmt="vdi")
    with blockfmt.open(child, read_only=False) as img:
        img.write_at(0, bytes(MIB))  # child slot 0: zeros over the parent's byte 1
    corrupt(child, bmap=[0, 0, 0, U])
    with blockfmt.open(child, read_only=False) as img:
        result = img.check("all")
    assert (result.corruptions, result.corruptions_fixed) == (0, 3)
    assert entries(child, 4) == [0, BMAP_DISCARDED, BMAP_DISCARDED, U]
    assert blocks_of(child, 4) == [b"\x00", b"\x00", b"\x00", b"\x04"]


def test_many_users_of_a_block_with_data_still_give_up(tmp_path: Path) -> None:
    users = blockfmt_vdi.check.MAX_SPLIT_BLOCKS + 2
    path = make(tmp_path, users, 1)
    corrupt(path, bmap=[0] * users)
    before = path.read_bytes()
    repaired, _ = repair(path)
    assert repaired.corruptions == users  # users - 1 shared, and the count
    assert repaired.messages[-1].startswith("(not repaired: more than 64 block map entries share")
    assert path.read_bytes() == before


# -- the bulk repair of a full message list agrees with the per-entry one ---------------------------

BLOCKS = 3 * PAGE_ENTRIES + 77
DISK_BLOCKS = PAGE_ENTRIES + 100  # the second page straddles the end of the disk
WRITTEN = 5  # slots 0..3 hold data, slot 4 zeros; the file ends inside a sixth block


def _hostile(path: Path, seed: int) -> None:
    """Every kind of bad entry over several pages, those inside the disk sharing only the block
    of zeros (so the repair copies nothing and is not given up)."""
    blockfmt.create(path, "vdi", BLOCKS * MIB)
    with blockfmt.open(path, read_only=False) as img:
        for block in range(WRITTEN):
            img.write_at(block * MIB, bytes([block + 1 if block < 4 else 0]) * 512)
    shrink_disk(path, DISK_BLOCKS)
    header = Header.parse(path.read_bytes()[:512])
    rng = random.Random(seed)
    anywhere = (
        lambda: U,
        lambda: BMAP_DISCARDED,
        lambda: 4,  # the block of zeros
        lambda: WRITTEN,  # the block the end of file cuts short
        lambda: rng.randrange(WRITTEN + 1, BLOCKS),  # past end of file
        lambda: rng.randrange(BLOCKS, 1 << 31),  # too large, past end of file
        lambda: rng.randrange(BLOCKS, 1 << 31) if rng.random() < 0.9 else 0x00FF00FF,  # one mostly
    )
    past_disk = (*anywhere, lambda: rng.randrange(WRITTEN))  # copies of the data blocks too
    bmap = [0, 1, 2, 3] + [
        rng.choice(anywhere if block < DISK_BLOCKS else past_disk)() for block in range(4, BLOCKS)
    ]
    bmap[PAGE_ENTRIES * 2 : PAGE_ENTRIES * 3] = [0] * PAGE_ENTRIES  # a page of one entry past the disk
    with open(path, "r+b") as f:
        f.seek(header.offset_bmap)
        f.write(struct.pack(f"<{BLOCKS}I", *bmap))
        f.truncate(header.offset_data + WRITTEN * MIB + MIB // 2)


@pytest.mark.parametrize("seed", [1, 2])
def test_bulk_repair_equals_the_per_entry_repair(tmp_path: Path, monkeypatch, seed: int) -> None:
    results = []
    shipped = blockfmt_vdi.check.MAX_MESSAGES
    for cap in (shipped, 10**9):
        path = tmp_path / f"cap{cap}.vdi"
        _hostile(path, seed)
        monkeypatch.setattr(blockfmt_vdi.check, "MAX_MESSAGES", cap)
        with blockfmt.open(path, read_only=False) as img:
            result = img.check("all")
            recheck = img.check()
        assert (result.corruptions, recheck.corruptions) == (0, 0)
        data = path.read_bytes()  # the header's UUIDs differ (each image is created anew)
        results.append((result.corruptions_fixed, allocated_count(path), data[512:]))
    assert results[0][0] == results[1][0] > shipped
    assert results[0][1:] == results[1][1:]


def _readable_blocks(path: Path, count: int) -> dict[int, bytes]:
    """Block -> bytes for each of the first *count* blocks blockfmt reads (one past end of file
    is an error here, zeros in QEMU)."""
    blocks = {}
    with blockfmt.open(path) as img:
        for block in range(count):
            try:
                blocks[block] = img.read_at(block * MIB, MIB)
            except CorruptImageError:
                pass
    return blocks


def _qemu_reads(qemu_img: str, path: Path, count: int) -> bytes:
    out = path.with_suffix(".raw")
    argv = [qemu_img, "dd", "-f", "vdi", "-O", "raw", "bs=1M", f"count={count}", f"if={path}", f"of={out}"]
    result = run_tool(argv)
    assert result.returncode == 0, result.output
    return out.read_bytes()


@pytest.mark.qemu
def test_repaired_shared_map_satisfies_qemu_and_reads_the_same(tmp_path: Path, qemu_img: str) -> None:
    compared = 256  # blocks: a few hundred random entries of every kind
    path = tmp_path / "t.vdi"
    _hostile(path, 3)
    ours, theirs = _readable_blocks(path, compared), _qemu_reads(qemu_img, path, compared)
    assert [ours[block][0] for block in range(5)] == [1, 2, 3, 4, 0]
    assert run_tool([qemu_img, "check", str(path)]).returncode == 2
    with blockfmt.open(path, read_only=False) as img:
        assert img.check("all").corruptions == 0
    result = run_tool([qemu_img, "check", str(path)])
    assert result.returncode == 0, result.output
    assert _qemu_reads(qemu_img, path, compared) == theirs
    after = _readable_blocks(path, compared)
    assert len(after) == compared
    assert all(after[block] == data for block, data in ours.items())


# -- map: a stretch of blocks naming one data block is one extent ---------------------------------


def test_map_coalesces_blocks_that_name_one_data_block(tmp_path: Path) -> None:
    path = make(tmp_path, 2 * PAGE_ENTRIES + 10, 2)
    corrupt(path, bmap=[0, 1, *[1] * (2 * PAGE_ENTRIES + 4), 0, 0, U, 1])
    with blockfmt.open(path) as img:
        extents = [(e.offset // MIB, e.length // MIB, e.data, e.host_offset) for e in img.map()]
        data_at = Header.parse(path.read_bytes()[:512]).offset_data
        assert extents == [
            (0, 1, True, data_at),  # block 0: slot 0, on its own
            # blocks naming slot 1 (across two page ends), then two naming slot 0: data without an
            # offset, so adjacent stretches merge as any extents of one kind do
            (1, 2 * PAGE_ENTRIES + 7, True, None),
            (2 * PAGE_ENTRIES + 8, 1, False, None),
            (2 * PAGE_ENTRIES + 9, 1, True, data_at + MIB),
        ]
        assert img.read_at(3 * MIB, 1) == b"\x02" and img.read_at((2 * PAGE_ENTRIES + 7) * MIB, 1) == b"\x01"


@pytest.mark.qemu
def test_qemu_maps_each_block_of_such_a_stretch(tmp_path: Path, qemu_img: str) -> None:
    """The deliberate difference: QEMU lists every block at the shared offset."""
    path = make(tmp_path, 4, 1)
    corrupt(path, bmap=[0, 0, 0, 0])
    result = run_tool([qemu_img, "map", "--output=json", str(path)])
    assert result.stdout.count('"offset"') == 4
    with blockfmt.open(path) as img:
        assert [(e.offset, e.length, e.data, e.host_offset) for e in img.map()] == [(0, 4 * MIB, True, None)]


def _naive_runs(bmap: list[int], first: int, count: int, repeats: bool) -> list[tuple]:
    """BlockMap.runs written the obvious way, one entry at a time (a repeated run ends with its
    map page: each page is compared on its own)."""
    runs: list[list] = []
    for block in range(first, first + count):
        entry, page = bmap[block], block // PAGE_ENTRIES
        allocated = entry < BMAP_DISCARDED
        last = runs[-1] if runs else None
        continues = last is not None and last[3] and last[2] == entry and (block - 1) // PAGE_ENTRIES == page
        repeated = (
            repeats
            and allocated
            and (
                continues
                or (
                    block + 1 < first + count
                    and (block + 1) // PAGE_ENTRIES == page
                    and bmap[block + 1] == entry
                )
            )
        )
        if last is not None and (
            (not allocated and last[2] is None)
            or (repeated and continues)
            or (
                allocated
                and not repeated
                and not last[3]
                and last[2] is not None
                and last[2] + last[1] == entry
            )
        ):
            last[1] += 1
        else:
            runs.append([block, 1, entry if allocated else None, repeated])
    return [tuple(run) for run in runs]


@pytest.mark.parametrize("seed", range(6))
def test_runs_equal_the_one_entry_at_a_time_reading(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    count = PAGE_ENTRIES * 2 + rng.randrange(100)
    bmap: list[int] = []
    while len(bmap) < count:  # stretches of one kind: repeats, consecutive slots, unallocated, discarded
        kind, length = rng.randrange(4), rng.choice([1, 2, 3, 17, 5000])
        value = rng.randrange(40)
        bmap += [
            [value] * length,
            list(range(value, value + length)),
            [U] * length,
            [BMAP_DISCARDED] * length,
        ][kind]
    bmap = bmap[:count]
    path = tmp_path / "map"
    path.write_bytes(struct.pack(f"<{count}I", *bmap))
    file = OsImageFile(str(path), read_only=True)
    try:
        table = BlockMap(file, 0, count)
        for repeats in (False, True):
            for first, length in ((0, count), (rng.randrange(count // 2), rng.randrange(1, count // 2))):
                got = [
                    (r.first, r.count, r.entry, r.repeated)
                    for r in table.runs(first, length, repeats=repeats)
                ]
                assert got == _naive_runs(bmap, first, length, repeats)
    finally:
        file.close()


# -- writes: a block sharing its data block is not written in place -------------------------------


@pytest.mark.parametrize(("offset", "length"), [(MIB, 512), (MIB + 100, 2 * MIB), (3 * MIB, MIB)])
def test_writes_into_a_shared_data_block_are_refused(tmp_path: Path, offset: int, length: int) -> None:
    """One write would change every block naming the data block (QEMU's does); until check -r all
    gives them their own copies, blockfmt refuses with a clear error and writes nothing."""
    path = make(tmp_path, 5, 2)
    corrupt(path, bmap=[0, 1, 1, 1, U])
    with blockfmt.open(path, read_only=False) as img:
        with pytest.raises(CorruptImageError, match=r"VDI blocks \d and \d name one data block"):
            img.write_at(offset, b"\x07" * length)
        with pytest.raises(CorruptImageError, match="refusing to write it in place"):
            img.write_zeroes(offset, length)
        img.write_at(0, b"\x09")  # block 0 has its own data block
        img.write_at(4 * MIB, b"\x0a")  # block 4 gets a new one
    with blockfmt.open(path, read_only=False) as img:
        assert [img.read_at(b * MIB, 1) for b in range(5)] == [
            b"\x09",
            b"\x02",
            b"\x02",
            b"\x02",
            b"\x0a",
        ]
        assert img.check("all").corruptions == 0
        img.write_at(2 * MIB, b"\x07")  # its own copy now
        assert [img.read_at(b * MIB, 1) for b in range(4)] == [b"\x09", b"\x02", b"\x07", b"\x02"]


def _every_kind_in_the_second_page(path: Path) -> None:
    """Page 0: the data blocks and one entry past end of file (the first problem); page 1: later
    users of data blocks (copied), too-large entries in the file (moved), one of them cut short by
    the end of file, and a block of zeros named thrice (the first kept, the others dropped)."""
    blocks = PAGE_ENTRIES + 20
    blockfmt.create(path, "vdi", blocks * MIB)
    with blockfmt.open(path, read_only=False) as img:
        for block in range(3):
            img.write_at(block * MIB, bytes([block + 1]) * 512)
    header = Header.parse(path.read_bytes()[:512])
    bmap = [0, 1, 2, blocks + 50] + [U] * (blocks - 4)
    p = PAGE_ENTRIES
    bmap[p + 1], bmap[p + 2] = 1, 2  # later users of data blocks 1 and 2
    bmap[p + 3], bmap[p + 5], bmap[p + 6] = 3, 3, 3  # slot 3 holds zeros (a hole of the file)
    bmap[p + 4] = blocks  # too large, in the file
    bmap[p + 7] = blocks + 1  # too large, cut short by the end of file
    with open(path, "r+b") as f:
        f.seek(header.offset_bmap)
        f.write(struct.pack(f"<{blocks}I", *bmap))
        f.truncate(header.offset_data + (blocks + 1) * MIB + MIB // 2)


def test_bulk_repair_of_copies_moves_and_cut_blocks_equals_the_per_entry_repair(
    tmp_path: Path, monkeypatch
) -> None:
    results = []
    for cap in (0, 10**9):
        path = tmp_path / f"cap{cap}.vdi"
        _every_kind_in_the_second_page(path)
        monkeypatch.setattr(blockfmt_vdi.check, "MAX_MESSAGES", cap)
        with blockfmt.open(path, read_only=False) as img:
            result = img.check("all")
            assert (result.corruptions, img.check().corruptions) == (0, 0)
            reads = [img.read_at(b * MIB, 1) for b in (0, 1, 2, PAGE_ENTRIES + 1, PAGE_ENTRIES + 2)]
        results.append((result.corruptions_fixed, allocated_count(path), path.read_bytes()[512:]))
        assert reads == [b"\x01", b"\x02", b"\x03", b"\x02", b"\x03"]
    assert results[0] == results[1]
