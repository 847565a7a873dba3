"""benchmarks/bench.py keeps running: a ``--quick`` smoke run on raw (no timing assertions)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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
    the cvt rows have a copy floor, the start-up row the bare interpreter's start."""
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
        has_floor = name.startswith(("cvt ", "start-up "))  # a copy; the bare interpreter's start
        assert (float(floor) > 0) if has_floor else floor == "-", name
    assert list(tmp_path.iterdir()) == [shm], "the bench left images behind"
    assert list(shm.iterdir()) == [], "the bench left images behind on tmpfs"


def test_bench_rejects_an_unknown_format() -> None:
    """A typo in --formats is a usage error, not a crash halfway through."""
    result = run_tool([sys.executable, str(BENCH), "--formats", "qcow9"])
    assert result.returncode == 2
    assert "unknown formats ['qcow9']" in result.stderr


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("blockfmt_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.qemu
def test_listing_the_cases_builds_no_source_image(tmp_path: Path, qemu_img: str, qemu_io: str) -> None:
    """``--only`` filters the listed cases; listing them must not build the large sources (the
    1 GiB images, the 64 TiB ones): each case's setup builds what it reads, once."""
    bench = _load_bench()
    tools = {"qemu-img": qemu_img, "qemu-io": qemu_io}
    runner = bench.Bench(tmp_path, bench.QUICK_SIZES, ["vhdx"], tools, tmp_path / "shm")
    cases = {case.name: case for case in runner.cases()}
    assert "huge-BAT 64T info" in cases and "io stdin writeback vhdx" in cases
    assert any(name.startswith("rand4k vhdx vs preadv") for name in cases)
    built = {p.name for p in tmp_path.iterdir()}
    assert not built & {"full.raw", "full.vhdx", "huge.vhdx", "open.vhdx"}, built
    cases["open vhdx 64T"].setup()
    assert {p.name for p in tmp_path.iterdir()} - built == {"open.vhdx"}
