"""Create: options and QEMU's messages, layout, qemu-img's verdict on every combination."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import InvalidOptionError
from blockfmt.testing.qemu import run_tool
from blockfmt_vhdx.bat import BatGeometry
from blockfmt_vhdx.constants import BatState
from blockfmt_vhdx.plugin import VHDX_SPEC

MiB = 1 << 20
GiB = 1 << 30


def test_create_options_match_qemu_help_in_order() -> None:
    """Names, types, defaults and help texts as ``qemu-img create -f vhdx -o help`` prints them."""
    options = {o.name: o for o in VHDX_SPEC.create_options}
    assert [o.name for o in VHDX_SPEC.create_options][:5] == [
        "size", "log_size", "block_size", "subformat", "block_state_zero",
    ]  # fmt: skip
    assert options["size"].help == "Virtual disk size; max of 64TB."
    assert options["log_size"].help == "Log size; min 1MB."
    assert (options["log_size"].default, options["log_size"].blockdev_name) == (MiB, "log-size")
    assert options["block_size"].help == (
        "Block Size; min 1MB, max 256MB. 0 means auto-calculate based on image size."
    )
    assert (options["block_size"].default, options["block_size"].blockdev_name) == (0, "block-size")
    assert options["subformat"].help == (
        "VHDX format type, can be either 'dynamic' or 'fixed'. Default is 'dynamic'."
    )
    assert options["subformat"].default is None
    assert options["block_state_zero"].help == (
        "Force use of payload blocks of type 'ZERO'. Non-standard, but default.  Do not set to 'off' "
        "when using 'qemu-img convert' with subformat=dynamic."
    )
    assert (options["block_state_zero"].default, options["block_state_zero"].blockdev_name) == (
        None,
        "block-state-zero",
    )


@pytest.mark.parametrize(
    ("size", "options", "message"),
    [
        (65 << 40, {}, "Image size too large; max of 64TB"),
        (MiB, {"block_size": 3 * MiB}, "Block size must be a power of two"),
        (MiB, {"log_size": 0}, "Log size must be a multiple of 1 MB"),
        (MiB, {"log_size": 5 * GiB}, "Log size must be smaller than 4 GB"),
        (MiB, {"subformat": "foo"}, "Parameter 'subformat' does not accept value 'foo'"),
        (MiB, {"logical_sector_size": 1024}, "Parameter 'logical_sector_size' must be 512 or 4096"),
    ],
)
def test_invalid_create_options_give_qemu_messages(
    tmp_path: Path, size: int, options: dict, message: str
) -> None:
    with pytest.raises(InvalidOptionError) as info:
        blockfmt.create(tmp_path / "x.vhdx", "vhdx", size, **options)
    assert str(info.value) == message
    assert not (tmp_path / "x.vhdx").exists()


@pytest.mark.parametrize(
    ("size", "expected"),
    [(GiB, 8 * MiB), (GiB + 1, 16 * MiB), (101 * GiB, 32 * MiB), (33 << 40, 64 * MiB)],
)
def test_auto_block_size_follows_qemu_table(tmp_path: Path, size: int, expected: int) -> None:
    path = tmp_path / "a.vhdx"
    blockfmt.create(path, "vhdx", size)
    with blockfmt.open(path) as img:
        assert img.info().cluster_size == expected


def test_sizes_round_up_like_qemu(tmp_path: Path) -> None:
    """Disk size to 512 bytes, log and block size to 1 MiB, block size capped at 256 MiB."""
    path = tmp_path / "r.vhdx"
    blockfmt.create(path, "vhdx", 1000, block_size=512 * MiB, log_size=MiB + 1)
    with blockfmt.open(path) as img:
        assert img.size == 1024
        assert img.info().cluster_size == 256 * MiB
        assert img.driver.headers.current.log_length == 2 * MiB


def test_fixed_image_keeps_blocks_present_at_preallocated_offsets(tmp_path: Path) -> None:
    """NOTES.md #5: unlike QEMU, fixed blocks are FULLY_PRESENT back to back, whatever block_state_zero."""
    path = tmp_path / "f.vhdx"
    blockfmt.create(
        path, "vhdx", 10 * MiB + 512, subformat="fixed", block_size=4 * MiB, block_state_zero=True
    )
    with blockfmt.open(path) as img:
        drv = img.driver
        offsets = [drv.data_offset(b) for b in range(3)]
        assert [drv.bat.state(b) for b in range(3)] == [BatState.FULLY_PRESENT] * 3
        assert offsets == [offsets[0], offsets[0] + 4 * MiB, offsets[0] + 8 * MiB]
        assert path.stat().st_size == offsets[0] + 12 * MiB
        assert img.read_at(0, img.size).count(0) == img.size
        assert img.info().format_specific["subformat"] == "fixed"


def test_chunk_ratio_by_hand() -> None:
    """§2.5: chunk ratio = 2**23 * sector / block: 512 B and 1 MiB -> 4096; 4 KiB and 32 MiB -> 1024."""
    g = BatGeometry(disk_size=5 * GiB, block_size=MiB, logical_sector_size=512)
    assert g.chunk_ratio == 4096
    # 5120 payload blocks: one full chunk, so one bitmap entry sits at index 4096 before block 4096
    assert (g.payload_index(4095), g.payload_index(4096), g.bitmap_index(0)) == (4095, 4097, 4096)
    assert g.entry_count == 5121
    g4 = BatGeometry(disk_size=40 * GiB, block_size=32 * MiB, logical_sector_size=4096)
    assert g4.chunk_ratio == (1 << 23) * 4096 // (32 * MiB) == 1024
    assert (g4.payload_blocks, g4.entry_count, g4.payload_index(1024)) == (1280, 1281, 1025)


# -- qemu-img's verdict on blockfmt-made images --------------------------------------------------

_BLOCK_SIZES = (MiB, 8 * MiB, 32 * MiB, 256 * MiB, 0)
_CREATE_MATRIX = list(itertools.product(_BLOCK_SIZES, (MiB, 8 * MiB), ("dynamic", "fixed"), (True, False)))
#: pairwise subset for the default run: every value of every option, each pair of options at least once
_CREATE_PAIRWISE = [
    (MiB, MiB, "dynamic", True),
    (MiB, 8 * MiB, "fixed", False),
    (8 * MiB, MiB, "fixed", True),
    (8 * MiB, 8 * MiB, "dynamic", False),
    (32 * MiB, MiB, "dynamic", False),
    (32 * MiB, 8 * MiB, "fixed", True),
    (256 * MiB, 8 * MiB, "dynamic", True),
    (256 * MiB, MiB, "fixed", False),
    (0, MiB, "fixed", True),
    (0, 8 * MiB, "dynamic", False),
]


def _check_with_qemu(
    qemu_img: str, tmp_path: Path, block_size: int, log_size: int, sub: str, zero: bool
) -> None:
    size = 3 * max(block_size, 8 * MiB) + 3 * MiB + 512  # not a block multiple
    path = tmp_path / f"c-{block_size}-{log_size}-{sub}-{zero}.vhdx"
    blockfmt.create(
        path, "vhdx", size, block_size=block_size, log_size=log_size, subformat=sub, block_state_zero=zero
    )
    check = run_tool([qemu_img, "check", "-f", "vhdx", str(path)])
    assert check.returncode == 0, check.output
    assert "No errors were found on the image." in check.stdout
    info = json.loads(run_tool([qemu_img, "info", "--output=json", "-f", "vhdx", str(path)]).stdout)
    with blockfmt.open(path) as img:
        assert info["virtual-size"] == img.size == size
        assert info["cluster-size"] == img.info().cluster_size


@pytest.mark.qemu
@pytest.mark.parametrize(("block_size", "log_size", "sub", "zero"), _CREATE_PAIRWISE)
def test_created_image_passes_qemu_check(qemu_img, tmp_path, block_size, log_size, sub, zero) -> None:
    _check_with_qemu(qemu_img, tmp_path, block_size, log_size, sub, zero)


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize(("block_size", "log_size", "sub", "zero"), _CREATE_MATRIX)
def test_created_image_passes_qemu_check_full(qemu_img, tmp_path, block_size, log_size, sub, zero) -> None:
    _check_with_qemu(qemu_img, tmp_path, block_size, log_size, sub, zero)


# -- 4096-byte logical sectors -------------------------------------------------------------------


def test_4k_sector_image_written_and_read_after_reopen(tmp_path: Path) -> None:
    """Hyper-V's 4 KiB logical sectors: chunk ratio 2**23*4096/block; data survives a fresh open."""
    path = tmp_path / "4k.vhdx"
    block = MiB
    size = 33 * GiB  # past the first chunk: 32768 blocks of 1 MiB per sector bitmap chunk
    blockfmt.create(path, "vhdx", size, block_size=block, logical_sector_size=4096, physical_sector_size=4096)
    chunk_end = 32768 * block
    with blockfmt.open(path, read_only=False) as img:
        assert img.driver.geometry.chunk_ratio == 32768
        img.write_at(chunk_end - 5, b"A" * 10)
        img.write_at(7, b"B" * 3)
    with blockfmt.open(path) as img:
        assert img.read_at(chunk_end - 6, 12) == b"\0" + b"A" * 10 + b"\0"
        assert img.read_at(6, 5) == b"\0BBB\0"
        drv = img.driver
        # the block after the chunk border sits after the bitmap entry at index 32768
        assert drv.geometry.payload_index(32768) == 32769
        assert drv.bat.bitmap_entry(0) == 0  # BAT index 32768
        assert drv.bat.state(32768) == BatState.FULLY_PRESENT
        assert img.info().format_specific["logical_sector_size"] == 4096


@pytest.mark.qemu
def test_qemu_refuses_4k_sector_images(qemu_img, tmp_path: Path) -> None:
    """QEMU 7.2 opens only 512-byte logical sectors (NOTES.md #7): it refuses what Hyper-V makes."""
    path = tmp_path / "4k.vhdx"
    blockfmt.create(path, "vhdx", 64 * MiB, logical_sector_size=4096)
    run = run_tool([qemu_img, "info", "-f", "vhdx", str(path)])
    assert run.returncode != 0
    assert "Operation not supported" in run.stderr
