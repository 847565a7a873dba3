"""``-t``/``-T`` cache modes on the command line: QEMU's texts, QEMU's defaults, the same bytes.

QEMU 7.2's flush behaviour, observed with ``strace -f -e trace=fsync,fdatasync`` (a 40 MiB raw
source): ``qemu-img convert -O raw`` makes no flush at all (default ``-t unsafe``), ``-t writeback``
one at the end, ``-t writethrough`` one per write request; ``qemu-io -c write ... -c write ...``
flushes after every write (default writethrough) and not again at close (nothing was written since
the last flush), with ``-t writeback`` once at close, with ``-t unsafe`` never. blockfmt's side is
counted here at ``os.fdatasync``, in process.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from .conftest import Twins, file_bytes

pytestmark = pytest.mark.qemu


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The file descriptors ``os.fdatasync`` is called on, in order."""
    calls: list[int] = []
    real: Callable[[int], None] = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    return calls


@pytest.mark.parametrize(
    "args",
    [
        ["convert", "-t", "foo", "-O", "raw", "t.raw", "out.raw"],
        ["convert", "-T", "bar", "-O", "raw", "t.raw", "out.raw"],
        ["amend", "-t", "foo", "-o", "size=8M", "t.raw"],
        ["bench", "-t", "foo", "t.raw"],
    ],
    ids=" ".join,
)
def test_invalid_cache_mode_texts_match_qemu_img(twins: Twins, args: list[str]) -> None:
    theirs, ours = twins.both("img", args)
    assert (ours.code, ours.stderr) == (theirs.code, theirs.stderr)


def test_invalid_cache_mode_text_matches_qemu_io(twins: Twins) -> None:
    theirs, ours = twins.both("io", ["-f", "raw", "-t", "foo", "-c", "read 0 512", "t.raw"])
    assert (ours.code, ours.stderr) == (theirs.code, theirs.stderr)


@pytest.mark.parametrize("mode", ["writeback", "writethrough", "none", "off", "directsync", "unsafe"])
@pytest.mark.parametrize("fmt", ["raw", "vhdx", "vdi"])
def test_every_cache_mode_converts_to_what_qemu_reads(twins: Twins, mode: str, fmt: str) -> None:
    """Both tools accept every mode for target and source; the targets read back alike."""
    args = ["convert", "-t", mode, "-T", mode, "-f", "raw", "-O", fmt, "u.raw", f"out.{fmt}"]
    theirs, ours = twins.both("img", args)
    assert (ours.code, ours.stdout, ours.stderr) == (theirs.code, theirs.stdout, theirs.stderr)
    for directory in (twins.qemu, twins.ours):
        raw = str(directory / "back.raw")
        twins.run_qemu("img", ["convert", "-f", fmt, "-O", "raw", str(directory / f"out.{fmt}"), raw])
    assert file_bytes(twins.ours / "back.raw") == file_bytes(twins.qemu / "back.raw")


def test_convert_default_flushes_nothing_but_the_new_images_creation(twins: Twins, syncs: list[int]) -> None:
    """qemu-img convert's default ``-t unsafe``; with ``-t writeback`` the copy is flushed."""
    counts = {}
    for name, cache in (("create", None), ("default", []), ("writeback", ["-t", "writeback"])):
        syncs.clear()
        if cache is None:
            twins.run_ours("img", ["create", "-q", "-f", "vhdx", "made.vhdx", "5M"])
        else:
            assert twins.run_ours("img", ["convert", *cache, "-O", "vhdx", "u.raw", f"{name}.vhdx"]).code == 0
        counts[name] = len(syncs)
    assert counts["default"] == counts["create"]
    assert counts["writeback"] > counts["create"]


def test_qemu_io_writes_through_by_default(twins: Twins, syncs: list[int]) -> None:
    """Every write is flushed before the next command runs, unless ``-t writeback``/``-n``; the
    flushes are QEMU's, one for one (strace of qemu-io 7.2 on the same commands: 3, 1, 1, 0, 3)."""
    writes = [arg for n in range(3) for arg in ("-c", f"write -P 0x5a {n * 8}k 4k")]
    counts = {}
    for cache in ([], ["-t", "writeback"], ["-n"], ["-t", "unsafe"], ["-t", "directsync"]):
        syncs.clear()
        assert twins.run_ours("io", ["-f", "raw", *cache, *writes, "t.raw"]).code == 0
        counts[" ".join(cache) or "default"] = len(syncs)
    assert counts == {"default": 3, "-t writeback": 1, "-n": 1, "-t unsafe": 0, "-t directsync": 3}
