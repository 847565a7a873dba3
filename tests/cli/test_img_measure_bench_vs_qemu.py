"""``measure`` and ``bench`` against the real qemu-img: texts, exit codes and written bytes."""

from __future__ import annotations

import re

import pytest

from .conftest import Outcome, Twins, file_bytes

pytestmark = pytest.mark.qemu


def _vhdx(twins: Twins) -> None:
    for directory in (twins.qemu, twins.ours):
        path = str(directory / "d.vhdx")
        twins.run_qemu("img", ["create", "-q", "-f", "vhdx", path, "4M"])
        twins.run_qemu("io", ["-f", "vhdx", "-c", "write -P 0x11 0 1M", path])


MEASURE_CASES = [
    ["--size", "1G"],
    ["--size", "1000"],
    ["--size", "1.5k"],
    ["--size", "0"],
    ["--output=json", "--size", "1G"],
    ["-O", "raw", "d.vhdx"],
    ["--output=json", "-O", "raw", "t.raw"],
    ["-f", "raw", "-O", "raw", "d.vhdx"],
    ["--size", "1G", "d.vhdx"],
    [],
    ["-O", "raw"],
    ["--size", "x"],
    ["--size", "-1"],
    ["--size", "18E"],
    ["-O", "nope", "--size", "1G"],
    ["-O", "raw", "-o", "size=1M", "--size", "2G"],
    ["-O", "raw", "-o", "foo=1", "--size", "2G"],
    ["-O", "raw", "-o", "help", "--size", "1G"],
    ["-O", "raw", "-o", ",", "--size", "1G"],
    ["-O", "vdi", "-o", "static=x", "--size", "1G"],
    ["-O", "raw", "missing"],
    ["-l", "snap", "-O", "raw", "d.vhdx"],
    ["-O", "raw", "d.vhdx", "t.raw"],
    ["--size", "1G", "-f", "raw"],
    ["-O", "vhdx", "d.vhdx"],
    ["-O", "vdi", "--size", "1G"],
    ["--output=xml", "--size", "1G"],
    ["-U", "--size", "1G"],
]


@pytest.mark.parametrize("args", MEASURE_CASES, ids=" ".join)
def test_measure_matches_qemu_img(twins: Twins, args: list[str]) -> None:
    _vhdx(twins)
    theirs, ours = twins.both("img", ["measure", *args])
    assert ours == theirs


def _untimed(outcome: Outcome) -> Outcome:
    """The run time is the one line that differs between runs."""
    stdout = re.sub(r"Run completed in [0-9.]+ seconds", "Run completed in X seconds", outcome.stdout)
    return Outcome(outcome.code, stdout, outcome.stderr)


BENCH_CASES = [
    ["-c", "100", "d.vhdx"],
    ["-q", "-c", "10", "-U", "d.vhdx"],
    ["-w", "-c", "100", "-s", "64k", "-f", "vhdx", "d.vhdx"],
    ["-w", "-c", "2000", "-o", "1000", "-s", "100", "-S", "5000", "--pattern=0x41", "t.raw"],
    ["-w", "-c", "40", "-o", "1000", "-s", "100", "-S", "5000", "--pattern=0x41", "-f", "raw", "t.raw"],
    ["-c", "10", "-d", "4", "-o", "1M", "-S", "8k", "--flush-interval=5", "-w", "d.vhdx"],
    ["-c", "10", "-w", "--pattern=0x55", "-t", "none", "-i", "threads", "-n", "d.vhdx"],
    ["-c", "10", "--flush-interval=5", "d.vhdx"],
    ["-c", "10", "-w", "--flush-interval=5", "--no-drain", "d.vhdx"],
    ["--flush-interval=0", "-w", "-c", "1", "d.vhdx"],
    ["-c", "x", "d.vhdx"],
    ["-c", "-1", "d.vhdx"],
    ["-d", "x", "d.vhdx"],
    ["-s", "x", "d.vhdx"],
    ["-o", "x", "d.vhdx"],
    ["-S", "x", "d.vhdx"],
    ["--pattern=300", "d.vhdx"],
    ["-i", "foo", "d.vhdx"],
    ["-t", "foo", "d.vhdx"],
    ["--flush-interval=x", "d.vhdx"],
    ["-c", "10", "-s", "8M", "d.vhdx"],
    ["-c", "10", "-o", "4093k", "-s", "4k", "d.vhdx"],
    ["-c", "5", "-S", "3M", "d.vhdx"],
    ["-c", "10", "-w", "-U", "d.vhdx"],
    ["d.vhdx", "e"],
    [],
]


@pytest.mark.parametrize("args", BENCH_CASES, ids=" ".join)
def test_bench_matches_qemu_img(twins: Twins, args: list[str]) -> None:
    """Same lines (but the time) and exit code; a write run leaves the same bytes."""
    _vhdx(twins)
    theirs, ours = twins.both("img", ["bench", *args])
    assert _untimed(ours) == _untimed(theirs)
    assert file_bytes(twins.ours / "t.raw") == file_bytes(twins.qemu / "t.raw")
    if "-w" in args and theirs.code == 0:
        compared = twins.run_qemu("img", ["compare", str(twins.qemu / "d.vhdx"), str(twins.ours / "d.vhdx")])
        assert compared == Outcome(0, "Images are identical.\n", "")
