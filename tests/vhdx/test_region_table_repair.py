"""A damaged region table copy: blockfmt reads the other one; ``check -r all`` restores it (issue 19).

QEMU 7.2 reads only the first copy (``vhdx_open_region_tables``), so before the repair it cannot
open an image whose first copy is damaged; after it, both tools open the image.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import blockfmt
from blockfmt.testing.qemu import run_tool
from blockfmt_vhdx.constants import REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET

MiB = 1 << 20


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "regions.vhdx"
    blockfmt.create(path, "vhdx", 8 * MiB, block_size=MiB)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(MiB, b"\x3d" * MiB)
    return path


def _poke(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset + 20)
        byte = f.read(1)[0] ^ 1
        f.seek(offset + 20)
        f.write(bytes([byte]))


def _table(path: Path, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(64 * 1024)


@pytest.mark.parametrize("damaged", [REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET])
def test_damaged_copy_is_reported_and_restored(image, damaged) -> None:
    _poke(image, damaged)
    with blockfmt.open(image) as img:
        result = img.check()
        assert img.read_at(MiB, MiB) == b"\x3d" * MiB
    assert result.messages == [f"VHDX region table at offset {damaged} is corrupt; its other copy is used"]
    assert (result.corruptions, result.corruptions_fixed) == (1, 0)
    with blockfmt.open(image, read_only=False) as img:
        fixed = img.check("all")
        assert (fixed.corruptions, fixed.corruptions_fixed) == (0, 1)
        assert img.check().clean
    assert _table(image, REGION_TABLE1_OFFSET) == _table(image, REGION_TABLE2_OFFSET)


@pytest.mark.qemu
def test_qemu_opens_the_image_after_the_first_copy_is_restored(image, qemu_img, qemu_io) -> None:
    _poke(image, REGION_TABLE1_OFFSET)
    refused = run_tool([qemu_img, "info", "-f", "vhdx", str(image)])
    assert refused.returncode != 0 and "Could not open" in refused.stderr
    with blockfmt.open(image, read_only=False) as img:
        assert img.check("all").clean
    check = run_tool([qemu_img, "check", "-f", "vhdx", str(image)])
    assert check.returncode == 0 and "No errors were found on the image." in check.stdout, check.output
    read = run_tool([qemu_io, "-r", "-f", "vhdx", "-c", f"read -P 0x3d {MiB} {MiB}", str(image)])
    assert read.returncode == 0 and "Pattern verification failed" not in read.output, read.output
