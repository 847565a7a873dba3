"""``convert``'s full option set against the real qemu-img: texts, exit codes, resulting bytes."""

from __future__ import annotations

import pytest

from .conftest import Twins, file_bytes

pytestmark = pytest.mark.qemu


def _images(twins: Twins) -> None:
    """``d.vhdx`` (4 MiB, 0x11 in the first MiB) and ``big.raw`` (8 MiB of 0x77) in both dirs."""
    for directory in (twins.qemu, twins.ours):
        path = str(directory / "d.vhdx")
        twins.run_qemu("img", ["create", "-q", "-f", "vhdx", path, "4M"])
        twins.run_qemu("io", ["-f", "vhdx", "-c", "write -P 0x11 0 1M", path])
        big = str(directory / "big.raw")
        twins.run_qemu("img", ["create", "-q", "-f", "raw", big, "8M"])
        twins.run_qemu("io", ["-f", "raw", "-c", "write -P 0x77 0 8M", big])


CASES = [
    ["-c", "-O", "vhdx", "d.vhdx", "out.raw"],
    ["-c", "-O", "raw", "d.vhdx", "out.raw"],
    ["-c", "-O", "vhdx", "missing", "out.raw"],
    ["-n", "-O", "raw", "d.vhdx", "missing.raw"],
    ["-n", "-O", "raw", "d.vhdx", "t.raw"],
    ["-n", "-O", "raw", "d.vhdx", "big.raw"],
    ["-n", "d.vhdx", "big.raw"],
    ["-n", "--target-is-zero", "-O", "raw", "d.vhdx", "big.raw"],
    ["-n", "-o", "size=1M", "-O", "raw", "d.vhdx", "big.raw"],
    ["-n", "-O", "raw", "-B", "x", "d.vhdx", "big.raw"],
    ["-n", "--target-image-opts", "-O", "raw", "d.vhdx", "big.raw", "x"],
    ["-n", "--target-image-opts", "d.vhdx", "driver=raw,file.filename=big.raw"],
    ["-S", "0", "-O", "raw", "d.vhdx", "out.raw"],
    ["-S", "x", "-O", "raw", "d.vhdx", "out.raw"],
    ["-S", "1000", "-O", "raw", "d.vhdx", "out.raw"],
    ["-S", "32M", "-O", "raw", "d.vhdx", "out.raw"],
    ["-m", "0", "d.vhdx", "out.raw"],
    ["-m", "17", "d.vhdx", "out.raw"],
    ["-m", "4", "-W", "d.vhdx", "out.raw"],
    ["-B", "base.raw", "-O", "vhdx", "d.vhdx", "out.raw"],
    ["-l", "snap", "-O", "raw", "d.vhdx", "out.raw"],
    ["-s", "snap", "-O", "raw", "d.vhdx", "out.raw"],
    ["-C", "-O", "raw", "d.vhdx", "out.raw"],
    ["--salvage", "-O", "raw", "d.vhdx", "out.raw"],
    ["--target-is-zero", "-O", "raw", "d.vhdx", "out.raw"],
    ["--target-image-opts", "-O", "raw", "d.vhdx", "out.raw"],
    ["-r", "1M", "-O", "raw", "d.vhdx", "out.raw"],
    ["-r", "x", "-O", "raw", "d.vhdx", "out.raw"],
    ["--bitmaps", "-O", "vhdx", "d.vhdx", "out.raw"],
    ["-t", "none", "-T", "writeback", "-O", "raw", "d.vhdx", "out.raw"],
    ["-T", "foo", "-O", "raw", "d.vhdx", "out.raw"],
    ["-O", "raw", "d.vhdx", "t.raw", "out.raw"],
    ["-O", "raw", "d.vhdx", "missing", "out.raw"],
]


@pytest.mark.parametrize("args", CASES, ids=" ".join)
def test_convert_options_match_qemu_img(twins: Twins, args: list[str]) -> None:
    """Same texts and exit code; the raw targets hold the same bytes afterwards."""
    _images(twins)
    theirs, ours = twins.both("img", ["convert", *args])
    assert ours == theirs
    for name in ("out.raw", "big.raw", "t.raw"):
        assert file_bytes(twins.ours / name) == file_bytes(twins.qemu / name), name


def test_bad_target_cache_mode_creates_nothing(twins: Twins) -> None:
    """qemu-img checks ``-t`` only after creating the target (and leaves it); blockfmt-img checks it
    first, so the same message comes without an empty target left behind (docs/differences.md)."""
    _images(twins)
    theirs, ours = twins.both("img", ["convert", "-t", "foo", "-O", "raw", "d.vhdx", "out.raw"])
    assert ours == theirs
    assert not (twins.ours / "out.raw").exists()


def test_progress_into_existing_target(twins: Twins) -> None:
    """``-p -n``: progress from 0 to 100 as qemu-img draws it, and the same bytes."""
    _images(twins)
    theirs, ours = twins.both("img", ["convert", "-p", "-n", "-O", "raw", "d.vhdx", "big.raw"])
    assert ours.code == theirs.code == 0
    for out in (theirs.stdout, ours.stdout):
        assert out.startswith("    (0.00/100%)")
        assert out.rstrip().endswith("(100.00/100%)")
    assert file_bytes(twins.ours / "big.raw") == file_bytes(twins.qemu / "big.raw")
