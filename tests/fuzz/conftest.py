"""Seeds for the fuzz tests, built once per session, and a place to keep the inputs of failures."""

from __future__ import annotations

import bz2
import os
from pathlib import Path

import pytest

from blockfmt.testing.fuzz import Failure, Seed, make_case

from .seeds import QEMU_SEEDS, blockfmt_seed, qemu_seed


@pytest.fixture(scope="session")
def fuzz_seeds(
    tmp_path_factory: pytest.TempPathFactory, qemu_img: str, qemu_io: str
) -> dict[str, list[Seed]]:
    """Small seeds per format: qemu-img's and, once the plugin can create and write, blockfmt's own."""
    workdir = tmp_path_factory.mktemp("fuzz-seeds")
    by_format: dict[str, list[Seed]] = {}
    for name in QEMU_SEEDS:
        seed = qemu_seed(name, qemu_img, qemu_io, workdir)
        by_format.setdefault(seed.format, []).append(seed)
    for fmt in list(by_format):
        own = blockfmt_seed(fmt, workdir)
        if own is not None:
            by_format[fmt].append(own)
    return by_format


@pytest.fixture(scope="session")
def findings_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where failing inputs are written (``BLOCKFMT_FUZZ_FINDINGS`` overrides), bz2-compressed."""
    override = os.environ.get("BLOCKFMT_FUZZ_FINDINGS")
    path = Path(override) if override else tmp_path_factory.mktemp("fuzz-findings")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_failure(seeds: list[Seed], failure: Failure, directory: Path) -> Path:
    """Rebuild a failing case and store it with its mutations and traceback."""
    case = make_case(seeds, failure.seed_index, failure.case_seed)
    stem = f"{failure.seed_name}-{failure.case_seed}.{case.format}"
    target = directory / f"{stem}.bz2"
    target.write_bytes(bz2.compress(case.store.to_bytes()))
    notes = [f"stage: {failure.outcome.stage}", *case.mutations, failure.outcome.detail]
    (directory / f"{stem}.txt").write_text("\n".join(notes) + "\n")
    return target
