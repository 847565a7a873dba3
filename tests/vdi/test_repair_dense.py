"""check -r all makes the data area dense, and allocation never trusts a count past end of file.

Regressions of two fuzzer findings (tests/fuzz/regressions/vdi-*): a repaired duplicate left
``blocks_allocated`` one too high, and a hostile ``blocks_allocated`` sent the next new block 32 GiB
past a 2 MiB file. QEMU allocates at ``blocks_allocated``, so the count may only go down once no
live block lies at or above it: repair moves the highest blocks into the unused slots first.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

import blockfmt
import blockfmt_vdi.check
from blockfmt.driver import RepairMode
from blockfmt.errors import CorruptImageError
from blockfmt.fileio import OsImageFile
from blockfmt.testing.qemu import run_tool
from blockfmt_vdi.check import check_image
from blockfmt_vdi.constants import BMAP_UNALLOCATED
from blockfmt_vdi.image import VdiDriver

from .conftest import MIB, allocated_count, entries, qemu_img_ok

DATA = 0x400  # offset_data of the images made here
U = BMAP_UNALLOCATED


def make(tmp_path: Path, blocks: int, written: int) -> Path:
    """A dynamic image of *blocks* blocks whose first *written* blocks hold byte ``block + 1``."""
    path = tmp_path / "t.vdi"
    blockfmt.create(path, "vdi", blocks * MIB)
    with blockfmt.open(path, read_only=False) as img:
        for block in range(written):
            img.write_at(block * MIB, bytes([block + 1]) * MIB)
    return path


def corrupt(path: Path, bmap: list[int] | None = None, count: int | None = None) -> None:
    with open(path, "r+b") as f:
        if bmap is not None:
            f.seek(0x200)
            f.write(struct.pack(f"<{len(bmap)}I", *bmap))
        if count is not None:
            f.seek(388)
            f.write(struct.pack("<I", count))


def blocks_of(path: Path, count: int) -> list[bytes]:
    """The first byte of each virtual block and whether the block is uniform."""
    with blockfmt.open(path) as img:
        out = []
        for block in range(count):
            data = img.read_at(block * MIB, MIB)
            assert data == data[:1] * MIB, block
            out.append(data[:1])
        return out


def repair(path: Path) -> tuple[blockfmt.driver.CheckResult, blockfmt.driver.CheckResult]:
    with blockfmt.open(path, read_only=False) as img:
        repaired = img.check("all")
        again = img.check()
    return repaired, again


# -- the duplicate (fuzz: vdi-repair-duplicate-keeps-allocated-count) ------------------------------


@pytest.fixture
def duplicate(tmp_path: Path) -> Path:
    """Blocks 0 and 2 share slot 2 (content 3), block 1 is slot 1, slot 0 (content 1) is orphaned."""
    path = make(tmp_path, 3, 3)
    corrupt(path, bmap=[2, 1, 2])
    return path


def test_duplicate_is_reported_like_qemu(duplicate):
    with blockfmt.open(duplicate) as img:
        result = img.check()
    assert result.messages == ["ERROR: block index 2 also used by 2"]
    assert result.corruptions == 1


def test_duplicate_repair_copies_into_the_orphaned_slot(duplicate):
    repaired, again = repair(duplicate)
    assert repaired.messages == ["Repairing block index 2 also used by 2"]
    assert (repaired.corruptions, repaired.corruptions_fixed) == (0, 1)
    assert again.clean, again.messages
    # blocks 0 and 2 both still read slot 2's data; block 2 now has its copy in the orphaned slot 0
    assert blocks_of(duplicate, 3) == [b"\x03", b"\x02", b"\x03"]
    assert entries(duplicate, 3) == [2, 1, 0]
    assert allocated_count(duplicate) == 3
    assert os.path.getsize(duplicate) == DATA + 3 * MIB


def test_duplicates_past_the_copy_bound_are_reported_and_left(tmp_path, monkeypatch):
    """A hostile map can name one block millions of times: past the bound none is copied, all are
    reported unrepaired, and the count is left alone (a second repair does the same: idempotent)."""
    monkeypatch.setattr(blockfmt_vdi.check, "MAX_SPLIT_BLOCKS", 1)
    path = make(tmp_path, 4, 2)
    corrupt(path, bmap=[1, 1, 1, 0])
    before = path.read_bytes()
    repaired, again = repair(path)
    assert repaired.messages == [
        "ERROR: block index 1 also used by 1",
        "ERROR: block index 1 also used by 1",
        "ERROR: allocated blocks mismatch, is 4, should be 2",
        "(not repaired: more than 1 block map entries share a data block, and repair gives each its "
        "own copy; nothing was changed)",
    ]
    assert (repaired.corruptions, repaired.corruptions_fixed) == (3, 0)
    assert path.read_bytes() == before  # nothing is copied unless all of them are
    assert again.messages == repaired.messages[:3] and again.corruptions == 3
    monkeypatch.setattr(blockfmt_vdi.check, "MAX_SPLIT_BLOCKS", 64)
    repaired, again = repair(path)
    assert (repaired.corruptions, again.messages) == (0, [])
    assert blocks_of(path, 4) == [b"\x02", b"\x02", b"\x02", b"\x01"]
    assert allocated_count(path) == 4 and sorted(entries(path, 4)) == [0, 1, 2, 3]


class LoggingFile(OsImageFile):
    """Records every change to the file, and flushes, in order."""

    def __init__(self, path: str) -> None:
        super().__init__(path, read_only=False)
        self.log: list[tuple] = []

    def pwrite(self, data, offset: int) -> None:  # type: ignore[no-untyped-def]
        self.log.append(("write", offset, bytes(memoryview(data).cast("B"))))
        super().pwrite(data, offset)

    def truncate(self, length: int) -> None:
        self.log.append(("truncate", length))
        super().truncate(length)

    def flush(self) -> None:
        self.log.append(("flush",))
        super().flush()


def test_duplicate_repair_loses_nothing_at_any_crash_point(duplicate, tmp_path):
    original = duplicate.read_bytes()
    file = LoggingFile(str(duplicate))
    try:
        check_image(VdiDriver(file, read_only=False), RepairMode.ALL)
    finally:
        file.close()
    log = file.log
    kinds = [op[0] for op in log]
    # the copy is flushed before the map entry moves to it, the map before the count is written
    copy = kinds.index("write")
    assert log[copy] == ("write", DATA, b"\x03" * MIB)
    assert kinds[copy + 1] == "flush" and log[copy + 2][:2] == ("write", 0x200 + 4 * 2)  # block 2
    assert kinds[copy + 3] == "flush" and log[copy + 4][:2] == ("write", 0)
    for crash in range(len(log) + 1):
        state = bytearray(original)
        for op in log[:crash]:
            if op[0] == "write":
                state[op[1] : op[1] + len(op[2])] = op[2]
            elif op[0] == "truncate":
                del state[op[1] :]
        crashed = tmp_path / f"crash{crash}.vdi"
        crashed.write_bytes(state)
        assert blocks_of(crashed, 3) == [b"\x03", b"\x02", b"\x03"], crash
        # what QEMU would allocate next is never a live slot
        live = set(entries(crashed, 3))
        assert allocated_count(crashed) not in live, crash


@pytest.mark.qemu
def test_duplicate_repair_satisfies_qemu_and_its_next_allocation(duplicate, qemu_img, qemu_io):
    before = run_tool([qemu_img, "check", "-f", "vdi", str(duplicate)])
    assert before.returncode == 2 and before.stderr.splitlines() == ["ERROR: block index 2 also used by 2"]
    repair(duplicate)
    assert qemu_img_ok(qemu_img, "check", "-f", "vdi", str(duplicate)).strip() == (
        "No errors were found on the image."
    )
    qemu_img_ok(qemu_io, "-f", "vdi", "-c", f"write -P 0x44 {2 * MIB} {MIB}", str(duplicate))
    # QEMU wrote block 2 in its own copy: block 0, which shared its slot before, kept its data
    assert blocks_of(duplicate, 3) == [b"\x03", b"\x02", b"\x44"]
    assert qemu_img_ok(qemu_img, "check", "-f", "vdi", str(duplicate)).strip() == (
        "No errors were found on the image."
    )


# -- sparse maps ---------------------------------------------------------------------------------


def test_sparse_map_with_a_wrong_count_is_compacted(tmp_path):
    path = make(tmp_path, 4, 4)
    corrupt(path, bmap=[0, U, 2, 3])  # slot 1 orphaned; QEMU would allocate at 4 - count says 4
    corrupt(path, count=4)
    repaired, again = repair(path)
    assert repaired.messages == ["Repairing allocated blocks mismatch, is 3, should be 4"]
    assert again.clean, again.messages
    assert entries(path, 4) == [0, U, 2, 1]  # the highest block moved into the free slot
    assert allocated_count(path) == 3 and os.path.getsize(path) == DATA + 3 * MIB
    assert blocks_of(path, 4) == [b"\x01", b"\x00", b"\x03", b"\x04"]


def test_sparse_map_with_a_matching_count_is_reported_and_compacted(tmp_path):
    """The count agrees with the map, but block 3 lies at slot 3 = blocks_allocated: QEMU's next write
    would overwrite it. QEMU's check does not see this; ours does."""
    path = make(tmp_path, 4, 4)
    corrupt(path, bmap=[0, U, 2, 3], count=3)
    with blockfmt.open(path) as img:
        assert img.check().messages == ["ERROR: block index 3 lies at or above the allocated count 3, is 3"]
    repaired, again = repair(path)
    assert repaired.messages == ["Repairing block index 3 lies at or above the allocated count 3, is 3"]
    assert again.clean, again.messages
    assert entries(path, 4) == [0, U, 2, 1] and allocated_count(path) == 3
    assert blocks_of(path, 4) == [b"\x01", b"\x00", b"\x03", b"\x04"]


def test_allocating_after_spare_blocks_raises_the_count_past_them(tmp_path):
    """A crash after a block's data but before the count leaves a spare block; the new block goes after
    it and the count covers both, so QEMU's next allocation cannot land on the new block."""
    path = make(tmp_path, 4, 2)
    os.truncate(path, DATA + 3 * MIB)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(3 * MIB, b"\x09" * MIB)
        result = img.check()
    assert entries(path, 4) == [0, 1, U, 3] and allocated_count(path) == 4
    assert result.messages == ["ERROR: allocated blocks mismatch, is 3, should be 4"]
    repaired, again = repair(path)
    assert repaired.corruptions_fixed == 1 and again.clean
    assert entries(path, 4) == [0, 1, U, 2] and allocated_count(path) == 3
    assert blocks_of(path, 4) == [b"\x01", b"\x02", b"\x00", b"\x09"]


# -- a count far past end of file (fuzz: vdi-hostile-blocks-allocated-grows-file) ------------------

REFUSED = (
    "VDI header counts 32769 allocated blocks but the file holds only {stored}; refusing to allocate a "
    "new block past the end of the file (run 'check -r all')"
)


def test_allocation_refuses_a_count_past_end_of_file(tmp_path):
    path = make(tmp_path, 8, 2)
    corrupt(path, count=0x8001)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(MIB + 5, b"\x07" * 10)  # inside an allocated block: fine
        with pytest.raises(CorruptImageError) as err:
            img.write_at(4 * MIB, b"x")
        assert str(err.value) == REFUSED.format(stored=2)
    assert os.path.getsize(path) == DATA + 2 * MIB and allocated_count(path) == 0x8001
    repaired, again = repair(path)
    assert repaired.messages == ["Repairing allocated blocks mismatch, is 2, should be 32769"]
    assert again.clean and allocated_count(path) == 2
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(4 * MIB, b"\x05" * MIB)
    assert os.path.getsize(path) == DATA + 3 * MIB and entries(path, 5)[4] == 2


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """The fuzzer's input rebuilt by hand: a hostile count, two too-large entries past end of file,
    and a sparse map (block 0 at slot 0, block 5 at slot 2, slot 1 orphaned)."""
    path = make(tmp_path, 8, 0)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(0, b"\x01" * MIB)
        img.write_at(MIB, b"\x02" * MIB)
        img.write_at(5 * MIB, b"\x06" * MIB)
    corrupt(path, bmap=[0, 8193, U, 0xFFFEFFFF, U, 2, U, U], count=0x8001)
    return path


HOSTILE_ERRORS = [
    "block index 1 too large, is 8193",
    "block index 3 too large, is 4294901759",
    "allocated blocks mismatch, is 2, should be 32769",
]


def test_hostile_count_is_reported_like_qemu_and_refuses_allocation(hostile):
    with blockfmt.open(hostile) as img:
        assert img.check().messages == [f"ERROR: {m}" for m in HOSTILE_ERRORS]
    with blockfmt.open(hostile, read_only=False) as img:
        with pytest.raises(CorruptImageError) as err:
            img.write_at(4 * MIB, b"x")
    assert str(err.value) == REFUSED.format(stored=3)
    assert os.path.getsize(hostile) == DATA + 3 * MIB


def test_hostile_count_repair_drops_compacts_and_recounts(hostile):
    repaired, again = repair(hostile)
    assert repaired.messages == [f"Repairing {m}" for m in HOSTILE_ERRORS]
    assert (repaired.corruptions, repaired.corruptions_fixed) == (0, 3)
    assert again.clean, again.messages
    assert entries(hostile, 8) == [0, U, U, U, U, 1, U, U]
    assert allocated_count(hostile) == 2 and os.path.getsize(hostile) == DATA + 2 * MIB
    assert blocks_of(hostile, 8) == [b"\x01"] + [b"\x00"] * 4 + [b"\x06"] + [b"\x00"] * 2
    with blockfmt.open(hostile, read_only=False) as img:
        img.write_at(4 * MIB, b"\x05" * MIB)
    assert entries(hostile, 8)[4] == 2 and os.path.getsize(hostile) == DATA + 3 * MIB


@pytest.mark.qemu
def test_hostile_count_repair_satisfies_qemu_and_its_next_allocation(hostile, qemu_img, qemu_io):
    before = run_tool([qemu_img, "check", "-f", "vdi", str(hostile)])
    assert before.returncode == 2
    assert before.stderr.splitlines() == [f"ERROR: {m}" for m in HOSTILE_ERRORS]
    repair(hostile)
    assert qemu_img_ok(qemu_img, "check", "-f", "vdi", str(hostile)).strip() == (
        "No errors were found on the image."
    )
    qemu_img_ok(qemu_io, "-f", "vdi", "-c", f"write -P 0x44 {4 * MIB} {MIB}", str(hostile))
    assert blocks_of(hostile, 8) == [b"\x01"] + [b"\x00"] * 3 + [b"\x44", b"\x06"] + [b"\x00"] * 2
    assert os.path.getsize(hostile) == DATA + 3 * MIB
