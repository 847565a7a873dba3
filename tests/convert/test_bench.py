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
    "read raw 1M seq",
    "write4k raw x32",
    "write64k raw x32",
    "open raw 8T",
    "start-up raw info",
)


@pytest.mark.qemu
def test_quick_bench_on_raw_prints_every_case(tmp_path: Path, qemu_img: str, qemu_io: str) -> None:
    """Every raw case runs on both sides and gets a row with two times and a ratio."""
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
        ],
        timeout=120,
    )
    assert result.returncode == 0, result.output
    rows = {line[:28].strip(): line[28:].split() for line in result.stdout.splitlines()[3:]}
    assert sorted(rows) == sorted(RAW_CASES)
    for name, cells in rows.items():
        qemu_s, bf_s, _, ratio = (float(c) for c in cells[:4])
        assert qemu_s > 0 and bf_s > 0, name
        low, high = (bf_s - HALF_UNIT) / (qemu_s + HALF_UNIT), (bf_s + HALF_UNIT) / (qemu_s - HALF_UNIT)
        assert low - 0.01 <= ratio <= high + 0.01, name  # times are printed rounded to milliseconds
    assert list(tmp_path.iterdir()) == [], "the bench left images behind"


def test_bench_rejects_an_unknown_format() -> None:
    """A typo in --formats is a usage error, not a crash halfway through."""
    result = run_tool([sys.executable, str(BENCH), "--formats", "qcow9"])
    assert result.returncode == 2
    assert "unknown formats ['qcow9']" in result.stderr
