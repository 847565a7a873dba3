"""Every input the fuzzer broke a rule with, replayed through the same invariants.

Inputs live in ``regressions/`` as ``<name>.<format>.bz2`` with a ``<name>.txt`` note (mutations,
stage, traceback). ``OPEN`` lists findings not fixed yet, with the file that owns the fix: they are
strict xfails, so the fix turns them into an XPASS that asks for the entry to be removed.
"""

from __future__ import annotations

import bz2
from pathlib import Path

import pytest

from blockfmt.testing.fuzz import UNMUTATED, Layout, Seed, SparseBytes, run_campaign

REGRESSIONS = Path(__file__).parent / "regressions"

#: finding -> where it must be fixed and what is wrong
OPEN: dict[str, str] = {}


def _inputs() -> list:
    params = []
    for path in sorted(REGRESSIONS.glob("*.bz2")):
        name, fmt = path.name.removesuffix(".bz2").rsplit(".", 1)
        marks = [pytest.mark.xfail(reason=OPEN[name], strict=True)] if name in OPEN else []
        params.append(pytest.param(path, fmt, id=name, marks=marks))
    return params


def test_every_open_finding_has_an_input() -> None:
    names = {p.name.removesuffix(".bz2").rsplit(".", 1)[0] for p in REGRESSIONS.glob("*.bz2")}
    assert set(OPEN) <= names


@pytest.mark.parametrize(("path", "fmt"), _inputs())
def test_stored_input_keeps_every_invariant(path: Path, fmt: str) -> None:
    store = SparseBytes.from_bytes(bz2.decompress(path.read_bytes()))
    summary = run_campaign([Seed(path.name, fmt, store, Layout(()))], iter([(0, UNMUTATED)]))
    assert summary.cases == 1
    assert not summary.failures, summary.failures[0].outcome.detail
