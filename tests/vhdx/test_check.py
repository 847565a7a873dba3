"""check and repair: QEMU's findings and messages, safe repairs, image end offset."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import pytest

import blockfmt
from blockfmt.testing.qemu import run_tool
from blockfmt_vhdx import check
from blockfmt_vhdx.bat import make_entry
from blockfmt_vhdx.constants import BAT_REGION_GUID, BatState

from .builders import region_offset

MiB = 1 << 20


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "k.vhdx"
    blockfmt.create(path, "vhdx", 8 * MiB, block_size=MiB)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(0, b"\x42" * (3 * MiB))
    return path


def _set_entry(path: Path, index: int, value: int) -> None:
    with open(path, "r+b") as f:
        f.seek(region_offset(path, BAT_REGION_GUID) + index * 8)
        f.write(struct.pack("<Q", value))


def test_clean_image(image: Path) -> None:
    with blockfmt.open(image) as img:
        result = img.check()
    assert result.clean and result.messages == []
    # like QEMU's vhdx check: no cluster statistics, no end offset (qemu-img prints neither)
    assert (result.total_clusters, result.image_end_offset) == (None, None)


@pytest.mark.qemu
def test_entry_after_eof_found_like_qemu_and_repaired(image: Path, qemu_img) -> None:
    size = image.stat().st_size
    _set_entry(image, 5, make_entry(BatState.FULLY_PRESENT, 64 * MiB))
    qemu = run_tool([qemu_img, "check", str(image)])
    expected = (
        f"VHDX BAT entry 5 start offset {64 * MiB} points after end of file ({size}). "
        "Image has probably been truncated."
    )
    assert expected in qemu.stderr
    with blockfmt.open(image) as img:
        result = img.check()
    assert result.corruptions == 1 and result.messages == [expected]
    with blockfmt.open(image, read_only=False) as img:
        fixed = img.check("all")
        assert (fixed.corruptions, fixed.corruptions_fixed) == (0, 1)
        assert img.read_at(0, 3 * MiB) == b"\x42" * (3 * MiB)
        assert img.read_at(5 * MiB, MiB).count(0) == MiB
    after = run_tool([qemu_img, "check", str(image)])
    assert after.returncode == 0 and "No errors were found on the image." in after.stdout


def test_overlapping_blocks_are_reported_not_repaired(image: Path) -> None:
    with blockfmt.open(image) as img:
        first = img.driver.data_offset(0)
    _set_entry(image, 4, make_entry(BatState.FULLY_PRESENT, first))
    with blockfmt.open(image, read_only=False) as img:
        result = img.check("all")
    assert result.corruptions == 1 and result.corruptions_fixed == 0
    assert result.messages == [f"VHDX BAT entry 4 offset {first} overlaps with BAT entry 0 (offset {first})"]


def test_hostile_bat_of_one_shared_block_counted_in_bounded_memory(tmp_path: Path, monkeypatch) -> None:
    """Every payload entry of an 8 GiB disk names the same data block: each later one is one
    corruption and the first MAX_MESSAGES are named. Finding them keeps no record per entry (a list
    of runs took ~100 bytes per entry: 800 KiB here, 800 MiB for a 64 MiB file of an 8 TiB disk), and the
    run-length search over one-block runs is linear (it was quadratic per chunk: 35 s at 16 GiB)."""
    monkeypatch.setattr(check, "MAX_MESSAGES", 100)
    path = tmp_path / "shared.vhdx"
    blockfmt.create(path, "vhdx", 8 << 30, block_size=MiB)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(0, b"\x42" * MiB)
        first, geometry = img.driver.data_offset(0), img.driver.geometry
    bat = bytearray(struct.pack("<Q", make_entry(BatState.FULLY_PRESENT, first))) * geometry.entry_count
    for chunk in range(geometry.bitmap_blocks):
        index = geometry.bitmap_index(chunk)
        bat[index * 8 : index * 8 + 8] = bytes(8)
    with open(path, "r+b") as f:
        f.seek(region_offset(path, BAT_REGION_GUID))
        f.write(bat)
    with blockfmt.open(path) as img:
        tracemalloc.start()
        try:
            result = img.check()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert result.corruptions == geometry.payload_blocks - 1
    assert result.messages == [
        f"VHDX BAT entry {geometry.payload_index(block)} offset {first} overlaps with "
        f"BAT entry 0 (offset {first})"
        for block in range(1, 101)
    ]
    assert peak < 256 << 10, peak


def test_blocks_stored_in_reverse_order_do_not_overlap(tmp_path: Path) -> None:
    """Every block its own run (written last to first), the last one shorter than a block."""
    path = tmp_path / "reverse.vhdx"
    size = 9 * MiB + 3 * 512
    blockfmt.create(path, "vhdx", size, block_size=MiB)
    with blockfmt.open(path, read_only=False) as img:
        for block in reversed(range(10)):
            img.write_at(block * MiB, bytes([block + 1]) * min(MiB, size - block * MiB))
            img.flush()
        offsets = [img.driver.data_offset(block) for block in range(10)]
    assert offsets == sorted(offsets, reverse=True)
    with blockfmt.open(path) as img:
        assert img.check().clean
        assert img.read_at(9 * MiB, 3 * 512) == b"\x0a" * (3 * 512)


def test_invalid_state_repaired_to_zero(image: Path) -> None:
    _set_entry(image, 6, 4)
    with blockfmt.open(image, read_only=False) as img:
        assert img.check().messages == ["VHDX BAT entry 6 has invalid state 4"]
        assert img.check("all").corruptions_fixed == 1
        assert img.driver.bat.state(6) == BatState.ZERO
    with blockfmt.open(image) as img:
        assert img.check().clean
