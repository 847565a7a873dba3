"""A VHDX whose VirtualDiskSize is 0 opens exactly where QEMU 7.2 opens it (issue 19).

QEMU counts the BAT entries of an empty dynamic disk as ``(0 - 1) >> bits`` in 32 bits and refuses
the image unless its BAT region holds that many ("Invalid argument"); ``qemu-img create`` (and
qemu-iotest 213) make such images with a BAT region that large. The repair-idempotence sweep found
images (the size zeroed, the second region table damaged) that blockfmt used to open, "repair" and
check clean while QEMU could open neither the damaged image nor the repaired one: open, check and
``check -r all`` refuse them now, and blockfmt's own empty disks open in both tools.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import CorruptImageError
from blockfmt_vhdx.constants import REGION_TABLE2_OFFSET

from .builders import standard_items, write_metadata

MiB = 1 << 20
#: an 8 MiB image with 1 MiB blocks has a 1 MiB BAT region; QEMU counts (2**32 - 1) >> 12 entries
MESSAGE = (
    "VHDX BAT region (1048576 bytes) is too small for 1048575 entries "
    "(QEMU 7.2's count for an empty disk: Invalid argument)"
)


@pytest.fixture
def empty_disk(tmp_path: Path) -> Path:
    """An 8 MiB image with data, then its VirtualDiskSize set to 0 and its second region table
    damaged (a region table repair is what blockfmt would have done to it)."""
    path = tmp_path / "empty.vhdx"
    blockfmt.create(path, "vhdx", 8 * MiB, block_size=MiB)
    with blockfmt.open(path, read_only=False) as image:
        image.write_at(0, b"\x5a" * MiB)
    write_metadata(path, standard_items(0, MiB))
    with open(path, "r+b") as f:
        f.seek(REGION_TABLE2_OFFSET + 44)
        f.write(b"\x01")
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("read_only", [True, False])
def test_open_refuses_a_zero_disk_size_and_writes_nothing(empty_disk: Path, read_only: bool) -> None:
    before = _digest(empty_disk)
    with pytest.raises(CorruptImageError) as info:
        blockfmt.open(empty_disk, "vhdx", read_only=read_only)
    assert str(info.value) == MESSAGE
    assert _digest(empty_disk) == before


def test_check_repair_all_refuses_it_and_leaves_the_file_alone(empty_disk: Path) -> None:
    before = _digest(empty_disk)
    result = subprocess.run(
        ["blockfmt-img", "check", "-r", "all", "-f", "vhdx", str(empty_disk)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().endswith(MESSAGE)
    assert _digest(empty_disk) == before


def test_blockfmt_makes_empty_disks_with_the_bat_region_qemu_counts(tmp_path: Path) -> None:
    path = tmp_path / "zero.vhdx"
    blockfmt.create(path, "vhdx", 0)
    with blockfmt.open(path) as image:
        assert image.size == 0 and image.info().cluster_size == 8 * MiB
        assert image.check().clean
    assert path.stat().st_size == 71 * MiB  # what qemu-img create makes: a 64 MiB BAT region


@pytest.mark.qemu
def test_qemu_refuses_the_same_image(empty_disk: Path, qemu_img: str) -> None:
    result = subprocess.run([qemu_img, "check", str(empty_disk)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().endswith("Invalid argument")


@pytest.mark.qemu
def test_empty_disks_open_in_both_tools_whoever_made_them(tmp_path: Path, qemu_img: str) -> None:
    ours, theirs = tmp_path / "ours.vhdx", tmp_path / "theirs.vhdx"
    blockfmt.create(ours, "vhdx", 0)
    subprocess.run([qemu_img, "create", "-q", "-f", "vhdx", str(theirs), "0"], check=True, timeout=60)
    assert ours.stat().st_size == theirs.stat().st_size
    for path in (ours, theirs):
        assert subprocess.run([qemu_img, "check", str(path)], capture_output=True, timeout=60).returncode == 0
        with blockfmt.open(path) as image:
            assert image.size == 0 and image.check().clean
