"""Fuzz the real vhdx and vdi plugins: a fast subset in the default run, >= 100,000 cases in the sweep."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from blockfmt.testing.fuzz import UNMUTATED, CampaignSummary, Limits, Seed, run_campaign

from .conftest import save_failure
from .seeds import SAMPLE_SEEDS, sample_seed

pytestmark = pytest.mark.qemu  # the seeds are made by qemu-img and qemu-io

#: cases per format in the default run (a few seconds each on one core)
QUICK_CASES = int(os.environ.get("BLOCKFMT_FUZZ_QUICK_CASES", "500"))
#: cases in the sweep, over every format
SWEEP_CASES = int(os.environ.get("BLOCKFMT_FUZZ_SWEEP_CASES", "100000"))
QUICK_LIMITS = Limits(seconds_per_case=10.0, read_budget=8 << 20)


def _campaign(
    seeds: list[Seed], count: int, findings: Path, *, workers: int, base: int, limits: Limits
) -> CampaignSummary:
    rng = random.Random(base)
    jobs = [(i, UNMUTATED) for i in range(len(seeds))]
    jobs += [(rng.randrange(len(seeds)), rng.randrange(1 << 48)) for _ in range(count)]
    summary = run_campaign(
        seeds,
        iter(jobs),
        workers=workers,
        limits=limits,
        on_failure=lambda f: save_failure(seeds, f, findings),
    )
    print(f"\n{summary.report()}\n  stages: {summary.stages}\n  findings: {findings}")
    return summary


def _describe(summary: CampaignSummary) -> str:
    lines = []
    for failure in summary.failures[:5]:
        lines.append(
            f"{failure.seed_name} #{failure.case_seed} at {failure.outcome.stage}: {failure.mutations}"
        )
        lines.append(failure.outcome.detail.strip().splitlines()[-1] if failure.outcome.detail else "")
    return "\n".join(lines)


@pytest.mark.parametrize("fmt", ["vhdx", "vdi"])
def test_quick_fuzz(fmt: str, fuzz_seeds: dict[str, list[Seed]], findings_dir: Path) -> None:
    base = int(os.environ.get("BLOCKFMT_FUZZ_BASE", "20240601"))
    summary = _campaign(fuzz_seeds[fmt], QUICK_CASES, findings_dir, workers=1, base=base, limits=QUICK_LIMITS)
    assert summary.cases == QUICK_CASES + len(fuzz_seeds[fmt])
    assert not summary.failures, _describe(summary)


@pytest.mark.slow
def test_sweep(fuzz_seeds: dict[str, list[Seed]], findings_dir: Path) -> None:
    seeds = [seed for group in fuzz_seeds.values() for seed in group]
    seeds += [seed for name in SAMPLE_SEEDS if (seed := sample_seed(name)) is not None]
    workers = int(os.environ.get("BLOCKFMT_FUZZ_WORKERS", str(os.cpu_count() or 1)))
    summary = _campaign(seeds, SWEEP_CASES, findings_dir, workers=workers, base=1, limits=Limits())
    assert summary.cases == SWEEP_CASES + len(seeds)
    assert not summary.failures, _describe(summary)
