"""The same CLI code serves every installed format: vhdx and vdi outputs compared live with qemu-img.

Nothing in blockfmt.cli knows a format; option lists, defaults and info facts come from the plugins.
These cases prove that on the two plugins shipped with blockfmt, including the error hint of a
VHDX whose log needs replay (qemu-iotests 070).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from blockfmt import default_host

from .conftest import Twins

pytestmark = pytest.mark.qemu

FORMATS = ["vhdx", "vdi"]


def _require(fmt: str) -> None:
    if fmt not in default_host().formats:
        pytest.skip(f"format plugin {fmt} not installed")


def _qemu_image(twins: Twins, fmt: str, name: str, size: str, *options: str) -> None:
    """Create *name* with the real qemu-img in both twin directories, with 64 KiB of 0x5a at 1 MiB."""
    for directory in (twins.qemu, twins.ours):
        twins.run_qemu("img", ["create", "-q", "-f", fmt, *options, str(directory / name), size])
        twins.run_qemu("io", ["-f", fmt, "-c", "write -P 0x5a 1M 64k", str(directory / name)])


CREATE_CASES = [
    ("vhdx", ["new.img", "64M"]),
    ("vhdx", ["-o", "log_size=2M,block_size=1M", "new.img", "64M"]),
    ("vhdx", ["-o", "subformat=fixed,block_state_zero=off", "new.img", "8M"]),
    ("vhdx", ["-o", "block_state_zero=maybe", "new.img", "8M"]),
    ("vhdx", ["-o", "log_size=xx", "new.img", "8M"]),
    ("vhdx", ["-o", "nope=1", "new.img", "8M"]),
    ("vdi", ["new.img", "64M"]),
    ("vdi", ["-o", "static=on", "new.img", "3M"]),
    ("vdi", ["-o", "static=maybe", "new.img", "3M"]),
    ("vdi", ["-o", "help"]),
]


@pytest.mark.parametrize(
    ("fmt", "args"), CREATE_CASES, ids=lambda v: v if isinstance(v, str) else " ".join(v)
)
def test_create_matches_qemu_img(twins: Twins, fmt: str, args: list[str]) -> None:
    """Formatting line (option order, defaults, on/off), option errors and -o help as qemu-img."""
    _require(fmt)
    theirs, ours = twins.both("img", ["create", "-f", fmt, *args])
    assert ours == theirs
    assert (twins.ours / "new.img").exists() == (twins.qemu / "new.img").exists()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("output", ["human", "json"])
def test_info_of_qemu_image_matches_qemu_img(twins: Twins, fmt: str, output: str) -> None:
    """virtual size, cluster_size, disk size and the JSON key order of a qemu-made image."""
    _require(fmt)
    _qemu_image(twins, fmt, "t.img", "64M")
    theirs, ours = twins.both("img", ["info", f"--output={output}", "t.img"])
    assert ours == theirs


@pytest.mark.parametrize("fmt", FORMATS)
def test_compare_of_qemu_images_matches_qemu_img(twins: Twins, fmt: str) -> None:
    """compare across formats and against raw reads the virtual disks, not the files."""
    _require(fmt)
    _qemu_image(twins, fmt, "t.img", "4M")
    for args in (["t.img", "t.raw"], ["-F", "raw", "t.img", "u.raw"], ["t.img", "t.img"]):
        theirs, ours = twins.both("img", ["compare", *args])
        assert ours == theirs, args


def test_vdi_open_errors_match_qemu_img(twins: Twins) -> None:
    """Garbage and all-zero files opened as VDI: qemu-img's exact refusal (size check, then signature)."""
    _require("vdi")
    for directory in (twins.qemu, twins.ours):
        (directory / "garbage.bin").write_bytes(bytes(i % 251 for i in range(251)) * 64)
        (directory / "zeros.bin").write_bytes(bytes(1 << 16))
    for name in ("garbage.bin", "zeros.bin"):
        theirs, ours = twins.both("img", ["info", "-f", "vdi", name])
        assert ours == theirs
        assert ours.code == 1


def test_vdi_map_matches_qemu_img(twins: Twins) -> None:
    """VDI reports real allocation in QEMU too, so the maps agree exactly (VHDX differs by design)."""
    _require("vdi")
    _qemu_image(twins, "vdi", "t.img", "4M")
    for output in ("human", "json"):
        theirs, ours = twins.both("img", ["map", f"--output={output}", "t.img"])
        assert ours == theirs


@pytest.mark.parametrize("fmt", FORMATS)
def test_check_of_qemu_image_matches_qemu_img(twins: Twins, fmt: str) -> None:
    """A clean qemu-made image checks clean, with qemu-img's exact text."""
    _require(fmt)
    _qemu_image(twins, fmt, "t.img", "64M")
    for output in ("human", "json"):
        theirs, ours = twins.both("img", ["check", f"--output={output}", "t.img"])
        assert ours == theirs


@pytest.fixture
def dirty_twins(twins: Twins, sample_image) -> Twins:
    """iotest-dirtylog-10G-4M.vhdx (a VHDX whose log needs replay) in both directories."""
    _require("vhdx")
    source: Path = sample_image("iotest-dirtylog-10G-4M.vhdx")
    for directory in (twins.qemu, twins.ours):
        shutil.copyfile(source, directory / "dirty.vhdx")
    return twins


def test_dirty_log_read_only_open_prints_qemu_hint(dirty_twins: Twins) -> None:
    """070: can't open device, the message, then the two hint lines, exit 1."""
    theirs, ours = dirty_twins.both("io", ["-r", "-c", "read -pP 0xa5 0 18M", "dirty.vhdx"])
    assert ours == theirs
    assert ours.code == 1
    assert ours.stderr.endswith("To replay the log, run:\nqemu-img check -r all 'dirty.vhdx'\n")
    theirs, ours = dirty_twins.both("img", ["info", "dirty.vhdx"])
    assert ours == theirs


def test_dirty_log_check_repair_prints_qemu_block(dirty_twins: Twins) -> None:
    """070: check -r all lists the replay as 1 corruption repaired, then double checks."""
    theirs, ours = dirty_twins.both("img", ["check", "-r", "all", "dirty.vhdx"])
    assert ours.code == theirs.code == 0
    expected_head = (
        "The following inconsistencies were found and repaired:\n\n"
        "    0 leaked clusters\n    1 corruptions\n\n"
        "Double checking the fixed image now...\nNo errors were found on the image.\n"
    )
    assert theirs.stdout == expected_head
    assert ours.stdout.startswith(expected_head)
    theirs, ours = dirty_twins.both("io", ["-r", "-c", "read -pP 0xa5 0 18M", "dirty.vhdx"])
    assert ours == theirs
    assert ours.code == 0
