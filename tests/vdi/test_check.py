"""check and check -r all on hand-corrupted block maps; messages compared with the real qemu-img check."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

import blockfmt
from blockfmt.testing.qemu import run_tool
from blockfmt_vdi.constants import BMAP_UNALLOCATED

from .conftest import MIB

SIZE = 8 * MIB + 300 * 1024  # 9 blocks
WRITTEN = 4 * MIB  # blocks 0..3 at entries 0..3


def corrupt(path: Path, *, entries: dict[int, int] = {}, count: int | None = None) -> None:  # noqa: B006
    with open(path, "r+b") as f:
        for block, value in entries.items():
            f.seek(0x200 + 4 * block)
            f.write(struct.pack("<I", value))
        if count is not None:
            f.seek(388)
            f.write(struct.pack("<I", count))


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "t.vdi"
    blockfmt.create(path, "vdi", SIZE)
    with blockfmt.open(path, read_only=False) as img:
        for block in range(4):
            img.write_at(block * MIB, bytes([block + 1]) * MIB)
    return path


# name, corruption, our messages without repair, QEMU's subset, left unfixed by -r all
CORRUPTIONS = [
    (
        "duplicate",
        {"entries": {5: 1}},
        ["ERROR: block index 1 also used by 1", "ERROR: allocated blocks mismatch, is 5, should be 4"],
        2,
    ),
    ("too large", {"entries": {6: 100}}, ["ERROR: block index 6 too large, is 100"], 1),
    ("count", {"count": 7}, ["ERROR: allocated blocks mismatch, is 4, should be 7"], 1),
    (
        "beyond eof",
        {"entries": {7: 8}},
        [
            "ERROR: block index 7 lies beyond the end of the file, is 8",
            "ERROR: allocated blocks mismatch, is 5, should be 4",
        ],
        1,
    ),
]


def test_clean_image_checks_clean_without_counters_like_qemu(image):
    """QEMU's VDI check sets no allocation counters or end offset; qemu-img prints none."""
    with blockfmt.open(image) as img:
        result = img.check()
    assert result.clean and result.messages == []
    assert (result.total_clusters, result.allocated_clusters, result.image_end_offset) == (None, None, None)


@pytest.mark.parametrize(
    ("name", "how", "messages", "qemu_lines"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS]
)
def test_check_reports_corruptions(image, name, how, messages, qemu_lines):
    corrupt(image, **how)
    with blockfmt.open(image) as img:
        result = img.check()
    assert result.messages == messages
    assert result.corruptions == len(messages)


@pytest.mark.parametrize(
    ("name", "how", "messages", "qemu_lines"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS]
)
def test_repair_fixes_and_keeps_data(image, name, how, messages, qemu_lines):
    corrupt(image, **how)
    with blockfmt.open(image, read_only=False) as img:
        repaired = img.check("all")
        again = img.check()
        data = img.read_at(0, WRITTEN)
    assert repaired.corruptions == 0 and repaired.corruptions_fixed == len(messages)
    assert again.clean, again.messages
    assert data == b"".join(bytes([b + 1]) * MIB for b in range(4))


def test_repair_gives_the_later_user_of_a_duplicate_its_own_copy(image):
    """Both blocks read the shared block before; dropping the later one would make it read zeros
    (the repair-idempotence sweep found that loss), so it gets a copy of the data instead."""
    corrupt(image, entries={5: 1})
    with blockfmt.open(image, read_only=False) as img:
        assert img.read_at(5 * MIB, MIB) == b"\x02" * MIB
        result = img.check("all")
        assert (result.corruptions, result.corruptions_fixed) == (0, 2)  # the copy and the count
        assert img.read_at(5 * MIB, MIB) == img.read_at(MIB, MIB) == b"\x02" * MIB
        img.write_at(5 * MIB, b"\x07" * 512)  # the two blocks no longer alias
        assert img.read_at(MIB, 512) == b"\x02" * 512
        assert img.check().clean
    with open(image, "rb") as f:
        f.seek(0x200)
        bmap = struct.unpack("<6I", f.read(24))
    assert bmap[:4] == (0, 1, 2, 3) and bmap[4] == BMAP_UNALLOCATED and bmap[5] == 4


def test_repair_extends_a_file_cut_inside_a_block(image):
    os.truncate(image, 0x400 + 3 * MIB + 4096)
    with blockfmt.open(image, read_only=False) as img:
        result = img.check("all")
        assert result.corruptions_fixed == 1 and img.check().clean
        assert img.read_at(3 * MIB, MIB) == b"\x04" * 4096 + bytes(MIB - 4096)


def _too_large_entry_inside_the_file(image: Path) -> None:
    """Blocks 0..8 at entries 0..8, then block 2 repointed at a tenth slot (entry 9) that holds 0x09s.

    Entry 9 is at ``blocks_in_image`` (too large) but inside the file, so QEMU reads block 2 from it.
    """
    with blockfmt.open(image, read_only=False) as img:
        img.write_at(4 * MIB, b"\x05" * (SIZE - 4 * MIB))  # entries 4..8
    with open(image, "r+b") as f:
        f.seek(0x400 + 9 * MIB)
        f.write(b"\x09" * MIB)
    corrupt(image, entries={2: 9})


def test_too_large_entry_inside_the_file_is_moved_below_the_count(image):
    """Issue 19: the entry's data is kept (moved into the slot it freed), the count and file stay dense."""
    _too_large_entry_inside_the_file(image)
    with blockfmt.open(image, read_only=False) as img:
        assert img.read_at(2 * MIB, MIB) == b"\x09" * MIB
        result = img.check("all")
        assert result.messages == [
            "Repairing block index 2 too large, is 9",
            "Repairing allocated blocks mismatch, is 8, should be 9",
        ]
        assert result.corruptions == 0 and result.corruptions_fixed == 2
        assert img.check().clean
        assert img.read_at(0, 4 * MIB) == b"\x01" * MIB + b"\x02" * MIB + b"\x09" * MIB + b"\x04" * MIB
        assert img.read_at(4 * MIB, SIZE - 4 * MIB) == b"\x05" * (SIZE - 4 * MIB)
    with open(image, "rb") as f:
        f.seek(388)
        assert struct.unpack("<I", f.read(4))[0] == 9
        f.seek(0x200 + 4 * 2)
        assert struct.unpack("<I", f.read(4))[0] == 2
    assert os.path.getsize(image) == 0x400 + 9 * MIB


@pytest.mark.qemu
def test_too_large_entry_inside_the_file_repaired_satisfies_qemu(image, qemu_img, qemu_io):
    """After ``check -r all`` qemu-img check is clean and QEMU reads the block it read before."""
    _too_large_entry_inside_the_file(image)
    before = run_tool([qemu_img, "check", "-f", "vdi", str(image)])
    assert before.returncode == 2 and "ERROR: block index 2 too large, is 9" in before.stderr
    with blockfmt.open(image, read_only=False) as img:
        assert img.check("all").clean
    after = run_tool([qemu_img, "check", "-f", "vdi", str(image)])
    assert after.returncode == 0, after.output
    read = run_tool([qemu_io, "-f", "vdi", "-c", f"read -P 9 {2 * MIB} {MIB}", str(image)])
    assert read.returncode == 0 and "Pattern verification failed" not in read.output, read.output


def test_truncated_map_is_a_reported_corruption(image):
    os.truncate(image, 0x200 + 8)
    with blockfmt.open(image, read_only=False) as img:
        result = img.check("all")
    assert (result.corruptions, result.corruptions_fixed) == (1, 0)
    assert result.messages == ["ERROR: VDI block map entry 2 lies beyond the end of the file"]
    assert os.path.getsize(image) == 0x200 + 8  # nothing was "repaired" from half a map


@pytest.mark.qemu
@pytest.mark.parametrize(
    ("name", "how", "messages", "qemu_lines"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS]
)
def test_messages_match_qemu_img_check_and_repair_satisfies_it(
    image, qemu_img, name, how, messages, qemu_lines
):
    corrupt(image, **how)
    before = run_tool([qemu_img, "check", "-f", "vdi", str(image)])
    assert before.returncode == 2
    qemu_errors = before.stderr.splitlines()
    assert len(qemu_errors) == qemu_lines
    assert all(line in messages for line in qemu_errors)
    with blockfmt.open(image, read_only=False) as img:
        img.check("all")
    after = run_tool([qemu_img, "check", "-f", "vdi", str(image)])
    assert after.returncode == 0, after.output
    assert after.stdout.strip() == "No errors were found on the image."
