"""A VHDX whose VirtualDiskSize is 0 is refused by open, check and create (issue 19).

QEMU 7.2 counts the BAT entries of an empty dynamic disk as ``(0 - 1) >> bits`` in 32 bits and
refuses the image unless its BAT region holds that many ("Invalid argument"). The repair-idempotence
sweep found images (the size zeroed, the second region table damaged) that blockfmt used to open,
"repair" and check clean while QEMU could open neither the damaged image nor the repaired one.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import CorruptImageError, InvalidOptionError
from blockfmt_vhdx.constants import REGION_TABLE2_OFFSET

from .builders import standard_items, write_metadata

MiB = 1 << 20
MESSAGE = "VHDX virtual disk size 0 is invalid (QEMU: Invalid argument)"


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


def test_create_refuses_a_zero_size(tmp_path: Path) -> None:
    with pytest.raises(InvalidOptionError, match="must be positive"):
        blockfmt.create(tmp_path / "zero.vhdx", "vhdx", 0)
    assert not (tmp_path / "zero.vhdx").exists()


@pytest.mark.qemu
def test_qemu_refuses_the_same_image(empty_disk: Path, qemu_img: str) -> None:
    result = subprocess.run([qemu_img, "check", str(empty_disk)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().endswith("Invalid argument")


@pytest.mark.qemu
def test_qemu_made_empty_disk_is_refused_here_though_qemu_opens_it(tmp_path: Path, qemu_img: str) -> None:
    """The deliberate difference: qemu-img sizes the BAT of an empty disk for its own underflowed
    count (64 MiB for 8 MiB blocks), so QEMU opens what it made; blockfmt refuses every empty disk."""
    path = tmp_path / "qemu-empty.vhdx"
    subprocess.run([qemu_img, "create", "-q", "-f", "vhdx", str(path), "0"], check=True, timeout=60)
    assert subprocess.run([qemu_img, "check", str(path)], capture_output=True, timeout=60).returncode == 0
    with pytest.raises(CorruptImageError, match="size 0 is invalid"):
        blockfmt.open(path, "vhdx")
