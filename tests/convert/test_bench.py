"""benchmarks/bench.py keeps running: a ``--quick`` smoke run on raw (no timing assertions)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from blockfmt.testing.qemu import run_tool

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"
#: half of the last printed digit of a time
HALF_UNIT = 0.0005
RAW_CASES = (
    "convert raw->raw sparse",
    "convert raw->raw full",
    "cvt raw->raw default ext4",
    "cvt raw->raw flush ext4",
    "cvt raw->raw default tmpfs",
    "cvt raw->raw flush tmpfs",
    "read raw 1M seq",
    "write4k raw x32",
    "write64k raw x32",
    "open raw 8T",
    "start-up raw info",
    "io -c writeback raw",
    "io stdin writeback raw",
    "io -c default raw",
    "io stdin default raw",
)


@pytest.mark.qemu
def test_quick_bench_on_raw_prints_every_case(tmp_path: Path, qemu_img: str, qemu_io: str) -> None:
    """Every raw case runs on both sides and gets a row with two times, a ratio and CPU times;
    the cvt rows have a copy floor."""
    shm = tmp_path / "shm"  # stands in for tmpfs: the smoke run checks the rows, not the file system
    shm.mkdir()
    result = run_tool(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--formats",
            "raw",
            "--repeat",
            "1",
            "--workdir",
            str(tmp_path),
            "--tmpfs",
            str(shm),
        ],
        timeout=240,
    )
    assert result.returncode == 0, result.output
    rows = {line[:28].strip(): line[28:].split() for line in result.stdout.splitlines()[3:]}
    assert sorted(rows) == sorted(RAW_CASES)
    for name, cells in rows.items():
        qemu_s, bf_s, _, ratio = (float(c) for c in cells[:4])
        assert qemu_s > 0 and bf_s > 0, name
        low, high = (bf_s - HALF_UNIT) / (qemu_s + HALF_UNIT), (bf_s + HALF_UNIT) / (qemu_s - HALF_UNIT)
        assert low - 0.01 <= ratio <= high + 0.01, name  # times are printed rounded to milliseconds
        q_cpu, bf_cpu = (float(c) for c in cells[8:10])
        assert q_cpu >= 0 and bf_cpu > 0, name  # a Python process spends milliseconds starting
        floor = cells[11]
        assert (float(floor) > 0) if name.startswith("cvt ") else floor == "-", name
    assert list(tmp_path.iterdir()) == [shm], "the bench left images behind"
    assert list(shm.iterdir()) == [], "the bench left images behind on tmpfs"


def test_bench_rejects_an_unknown_format() -> None:
    """A typo in --formats is a usage error, not a crash halfway through."""
    result = run_tool([sys.executable, str(BENCH), "--formats", "qcow9"])
    assert result.returncode == 2
    assert "unknown formats ['qcow9']" in result.stderr
