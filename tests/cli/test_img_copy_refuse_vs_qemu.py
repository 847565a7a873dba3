"""``dd``, ``snapshot`` and ``bitmap`` against the real qemu-img, on vhdx, vdi and raw images."""

from __future__ import annotations

import re

import pytest

from .conftest import Outcome, Twins, file_bytes

pytestmark = pytest.mark.qemu


def _images(twins: Twins) -> None:
    """``d.vhdx`` and ``d.vdi`` (4 MiB: 0x11 in the first MiB, 0x22 in the third) in both dirs."""
    for directory in (twins.qemu, twins.ours):
        for fmt in ("vhdx", "vdi"):
            path = str(directory / f"d.{fmt}")
            twins.run_qemu("img", ["create", "-q", "-f", fmt, path, "4M"])
            twins.run_qemu("io", ["-f", fmt, "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 2M 1M", path])


DD_CASES = [
    ["if=d.vhdx", "of=out.raw"],
    ["if=d.vhdx", "of=out.raw", "bs=64k", "count=40", "skip=2"],
    ["if=d.vdi", "of=out.raw", "bs=1.5k", "skip=1000"],
    ["if=d.vdi", "of=out.raw", "bs=1M", "count=3"],
    ["-f", "vdi", "if=d.vdi", "of=out.raw", "count=0"],
    ["if=d.vhdx", "of=out.raw", "skip=100000"],
    ["if=d.vhdx", "of=out.raw", "bs=1k", "bs=2k", "skip=1"],
    ["if=d.vhdx", "of=out.raw", "bs=0"],
    ["if=d.vhdx", "of=out.raw", "bs=3G"],
    ["if=d.vhdx", "of=out.raw", "bs=x"],
    ["if=d.vhdx", "of=out.raw", "count=-1"],
    ["if=d.vhdx", "of=out.raw", "skip=x"],
    ["if=d.vhdx", "of=out.raw", "foo=1"],
    ["if=d.vhdx", "of=out.raw", "bs"],
    ["if=d.vhdx"],
    ["of=out.raw"],
    ["if=missing", "of=out.raw"],
    ["if=d.vhdx", "of=nodir/out.raw"],
    ["-O", "nope", "if=d.vhdx", "of=out.raw"],
    ["-f", "vdi", "if=d.vhdx", "of=out.raw"],
    ["-O", "vhdx", "-o", "x", "if=d.vhdx", "of=out.raw"],
    ["-U", "if=d.vhdx", "of=out.raw"],
]


@pytest.mark.parametrize("args", DD_CASES, ids=" ".join)
def test_dd_matches_qemu_img(twins: Twins, args: list[str]) -> None:
    """Same messages, exit code and output bytes as qemu-img dd."""
    _images(twins)
    theirs, ours = twins.both("img", ["dd", *args])
    assert ours == theirs
    assert file_bytes(twins.ours / "out.raw") == file_bytes(twins.qemu / "out.raw")


@pytest.mark.parametrize("fmt", ["vhdx", "vdi"])
def test_dd_to_image_formats_reads_back_as_qemu_img_wrote_it(twins: Twins, fmt: str) -> None:
    """``-O vhdx|vdi``: qemu-img check passes and qemu-img compare finds qemu-img's own result equal."""
    _images(twins)
    args = ["dd", "-O", fmt, "if=d.vhdx", f"of=out.{fmt}", "bs=1M", "skip=1", "count=3"]
    theirs, ours = twins.both("img", args)
    assert ours == theirs == Outcome(0, "", "")
    check = twins.run_qemu("img", ["check", str(twins.ours / f"out.{fmt}")])
    assert check.code == 0, check
    same = twins.run_qemu("img", ["compare", str(twins.qemu / f"out.{fmt}"), str(twins.ours / f"out.{fmt}")])
    assert same == Outcome(0, "Images are identical.\n", "")


REFUSAL_CASES = [
    ["snapshot", "-l", "d.vhdx"],
    ["snapshot", "d.vdi"],
    ["snapshot", "-l", "-q", "-U", "d.vdi"],
    ["snapshot", "-c", "s1", "d.vhdx"],
    ["snapshot", "-q", "-c", "s1", "d.vdi"],
    ["snapshot", "-a", "s1", "d.vdi"],
    ["snapshot", "-d", "s1", "d.vhdx"],
    ["snapshot", "-l", "-c", "x", "d.vdi"],
    ["snapshot", "-c", "a", "-c", "b", "d.vdi"],
    ["snapshot", "-l"],
    ["snapshot", "-l", "missing"],
    ["snapshot", "-c", "s", "-f", "vdi", "d.vdi"],
    ["bitmap", "--add", "d.vhdx", "b0"],
    ["bitmap", "--add", "-g", "64k", "--remove", "d.vdi", "b0"],
    ["bitmap", "--remove", "d.vdi", "b0"],
    ["bitmap", "--clear", "-f", "vdi", "d.vdi", "b0"],
    ["bitmap", "--enable", "d.vhdx", "b0"],
    ["bitmap", "--disable", "d.vhdx", "b0"],
    ["bitmap", "--merge", "x", "-b", "t.raw", "-F", "raw", "d.vdi", "b0"],
    ["bitmap", "d.vdi", "b0"],
    ["bitmap", "--add", "d.vdi"],
    ["bitmap", "--add", "d.vdi", "b0", "extra"],
    ["bitmap", "--add", "-g", "x", "d.vdi", "b0"],
    ["bitmap", "--add", "-b", "t.raw", "d.vdi", "b0"],
    ["bitmap", "-F", "raw", "--add", "d.vdi", "b0"],
    ["bitmap", "--enable", "missing", "b0"],
    ["bitmap", "--add", "-U", "d.vdi", "b0"],
]


def _anonymous_nodes(outcome: Outcome) -> Outcome:
    """QEMU numbers anonymous nodes (``#block123``) by a process-wide counter."""
    return Outcome(outcome.code, outcome.stdout, re.sub(r"#block\d+", "#block", outcome.stderr))


@pytest.mark.parametrize("args", REFUSAL_CASES, ids=" ".join)
def test_snapshot_and_bitmap_refuse_like_qemu_img(twins: Twins, args: list[str]) -> None:
    """QEMU's own refusals, word for word, and the images are left unchanged."""
    _images(twins)
    before = {name: file_bytes(twins.ours / name) for name in ("d.vdi", "d.vhdx", "t.raw")}
    theirs, ours = twins.both("img", args)
    assert _anonymous_nodes(ours) == _anonymous_nodes(theirs)
    for name, content in before.items():
        assert file_bytes(twins.ours / name) == content, name
