"""``resize`` and ``amend``: qemu-img's command line and texts, and real resizes checked by QEMU.

On raw images both tools resize, so outputs and bytes are compared. QEMU cannot resize vhdx or vdi;
there blockfmt-img must do what it does for formats QEMU can resize, and the result is judged by
the real qemu-img check and read back with the real qemu-io.
"""

from __future__ import annotations

import pytest

from .conftest import Outcome, Twins, file_bytes

pytestmark = pytest.mark.qemu

RAW_CASES = [
    ["resize", "-f", "raw", "t.raw", "8M"],
    ["resize", "-f", "raw", "t.raw", "+1M"],
    ["resize", "-q", "-f", "raw", "t.raw", "6M"],
    ["resize", "-f", "raw", "t.raw", "4M"],
    ["resize", "-f", "raw", "t.raw", "1.5k"],
    ["resize", "-f", "raw", "--shrink", "t.raw", "1M"],
    ["resize", "-f", "raw", "--shrink", "t.raw", "-1M"],
    ["resize", "-f", "raw", "t.raw", "--", "-1M"],
    ["resize", "-f", "raw", "t.raw", "-10M"],
    ["resize", "-f", "raw", "t.raw", "0"],
    ["resize", "-f", "raw", "t.raw", "+-1"],
    ["resize", "-f", "raw", "t.raw", "1X"],
    ["resize", "-f", "raw", "t.raw", "1", "2"],
    ["resize", "t.raw"],
    ["resize", "-q", "t.raw"],
    ["resize", "missing.raw", "1M"],
    ["resize", "-f", "raw", "--preallocation=foo", "t.raw", "8M"],
    ["resize", "-f", "raw", "--preallocation=full", "t.raw", "8M"],
    ["resize", "-f", "raw", "--preallocation=falloc", "--shrink", "t.raw", "1M"],
    ["resize", "-x", "t.raw", "1M"],
    ["amend", "-f", "raw", "-o", "size=1M", "t.raw"],
    ["amend", "t.raw"],
    ["amend", "-o", "size=1M"],
    ["amend", "-o", "size=1M", "t.raw", "u.raw"],
    ["amend", "-o", "", "t.raw"],
    ["amend", "-t", "bogus", "-o", "size=1M", "t.raw"],
    ["amend", "-f", "raw", "-o", "help"],
]


@pytest.mark.parametrize("args", RAW_CASES, ids=" ".join)
def test_resize_and_amend_match_qemu_img_on_raw(twins: Twins, args: list[str]) -> None:
    """Same texts, exit code and resulting bytes as qemu-img."""
    theirs, ours = twins.both("img", args)
    assert ours == theirs
    assert file_bytes(twins.ours / "t.raw") == file_bytes(twins.qemu / "t.raw")


def _image(twins: Twins, fmt: str, size: str, *options: str) -> str:
    """A *fmt* image made by the real tools: 0x11 in [0, 1M), 0x22 in [2M, 3M), 0x33 at 5M (100k)."""
    path = str(twins.ours / f"r.{fmt}")
    twins.run_qemu("img", ["create", "-q", "-f", fmt, *options, path, size])
    writes = ["write -P 0x11 0 1M", "write -P 0x22 2M 1M", "write -P 0x33 5M 100k"]
    twins.run_qemu("io", ["-f", fmt, *[arg for cmd in writes for arg in ("-c", cmd)], path])
    return path


def _qemu_reads(twins: Twins, fmt: str, path: str, commands: list[str]) -> Outcome:
    return twins.run_qemu("io", ["-f", fmt, *[arg for cmd in commands for arg in ("-c", cmd)], path])


MiB = 1 << 20
FORMAT_CASES = [
    ("vdi", []),
    ("vdi", ["-o", "static=on"]),
    ("vhdx", []),
    ("vhdx", ["-o", "subformat=fixed"]),
    ("vhdx", ["-o", "block_size=1M"]),
]
# (new size, whether the BAT / block map must move): 8 MiB -> 20 MiB fits, 8 MiB -> 40 GiB does not
SIZES = [(20 * MiB, "20M"), (40 << 30, "40G"), (3 * MiB + 512, str(3 * MiB + 512))]


@pytest.mark.parametrize(
    ("fmt", "options"), FORMAT_CASES, ids=lambda v: v if isinstance(v, str) else " ".join(v)
)
@pytest.mark.parametrize(("size", "size_text"), SIZES, ids=[text for _, text in SIZES])
def test_resize_is_checked_clean_and_read_back_by_qemu(
    twins: Twins, fmt: str, options: list[str], size: int, size_text: str
) -> None:
    """Grow (within the map, and far enough to move the BAT/block map) and shrink; QEMU agrees."""
    path = _image(twins, fmt, "8M", *options)
    args = ["resize", "-f", fmt, *(["--shrink"] if size < 8 * MiB else []), path, size_text]
    assert twins.run_ours("img", args) == Outcome(0, "Image resized.\n", "")
    check = twins.run_qemu("img", ["check", "-f", fmt, path])
    assert (check.code, check.stderr) == (0, ""), check
    info = twins.run_qemu("img", ["info", "--output=json", "-f", fmt, path])
    assert f'"virtual-size": {size}' in info.stdout
    reads = ["read -P 0x11 0 1M", "read -P 0x22 2M 1M"]
    if size > 8 * MiB:
        reads += ["read -P 0x33 5M 100k", f"read -P 0 {5 * MiB + 102400} {3 * MiB - 102400}"]
        tail = min(size - 8 * MiB, 64 * MiB)
        reads += [f"read -P 0 {size - tail} {tail}"]
    else:
        reads += [f"read -P 0 {3 * MiB} 512"]
    reads += [f"write -P 0x44 {size - 512} 512", f"read -P 0x44 {size - 512} 512"]
    outcome = _qemu_reads(twins, fmt, path, reads)
    assert outcome.code == 0 and "Pattern verification failed" not in outcome.stdout, outcome
    assert twins.run_qemu("img", ["check", "-f", fmt, path]).code == 0


@pytest.mark.parametrize("fmt", ["vdi", "vhdx"])
def test_shrink_then_grow_reads_zeros_where_data_was(twins: Twins, fmt: str) -> None:
    """Bytes cut off by a shrink never come back: the grown part reads as zeros (QEMU's view)."""
    path = _image(twins, fmt, "8M")
    assert twins.run_ours("img", ["resize", "-q", "--shrink", path, str(2 * MiB + 4096)]).code == 0
    assert twins.run_ours("img", ["amend", "-o", "size=8M", path]) == Outcome(0, "", "")
    reads = ["read -P 0x22 2M 4k", f"read -P 0 {2 * MiB + 4096} {6 * MiB - 4096}"]
    outcome = _qemu_reads(twins, fmt, path, reads)
    assert outcome.code == 0 and "Pattern verification failed" not in outcome.stdout, outcome


@pytest.mark.parametrize("fmt", ["vdi", "vhdx"])
@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (["8M"], "Use the --shrink option to perform a shrink operation.\n"),
        (["--preallocation=full", "40M"], "Unsupported preallocation mode 'full'\n"),
        (["--preallocation=metadata", "4M"], "Preallocation can only be used for growing images\n"),
        (["-1G"], "New image size must be positive\n"),
    ],
)
def test_resize_refusals_leave_the_image_alone(twins: Twins, fmt: str, args: list[str], stderr: str) -> None:
    """qemu-img's checks come before any change."""
    path = _image(twins, fmt, "16M")
    before = file_bytes(twins.ours / f"r.{fmt}")
    outcome = twins.run_ours("img", ["resize", path, *args])
    assert outcome.code == 1
    assert outcome.stderr.startswith(f"qemu-img: {stderr}")
    assert file_bytes(twins.ours / f"r.{fmt}") == before


@pytest.mark.parametrize("fmt", ["vdi", "vhdx"])
def test_amend_lists_and_rejects_options(twins: Twins, fmt: str) -> None:
    """``-o help`` lists size; other options get QEMU's ``Invalid parameter``."""
    path = _image(twins, fmt, "8M")
    assert twins.run_ours("img", ["amend", "-f", fmt, "-o", "help"]) == Outcome(
        0, f"Amend options for '{fmt}':\n  size=<size>            - Virtual disk size\n", ""
    )
    assert twins.run_ours("img", ["amend", "-o", "foo=1", path]) == Outcome(
        1, "", "qemu-img: Invalid parameter 'foo'\n"
    )
    assert twins.run_ours("img", ["amend", "-o", "size=x", path]).stderr.startswith(
        "qemu-img: Parameter 'size' expects a non-negative number below 2^64\n"
    )
