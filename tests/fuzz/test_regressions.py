"""Every input the fuzzer broke a rule with, replayed through the same invariants.

Inputs live in ``regressions/`` as ``<name>.<format>.bz2`` (the image file) or, from the
coverage-guided fuzzer, ``<name>.<format>.in`` (its compact encoding, see
:mod:`blockfmt.testing.atheris_fuzz`), each with a ``<name>.txt`` note (mutations, stage,
traceback). ``OPEN`` lists findings not fixed yet, with the file that owns the fix: they are strict
xfails, so the fix turns them into an XPASS that asks for the entry to be removed (and the input
to move from ``regressions/open/`` to ``regressions/``).
"""

from __future__ import annotations

import bz2
from pathlib import Path

import pytest

from blockfmt.testing.atheris_fuzz import decode_input
from blockfmt.testing.fuzz import UNMUTATED, Layout, Seed, SparseBytes, run_campaign

from .atheris_main import FORMATS as ATHERIS_FORMATS

REGRESSIONS = Path(__file__).parent / "regressions"

#: finding -> where it must be fixed and what is wrong (none open now)
OPEN: dict[str, str] = {}


def _stored() -> list[Path]:
    """Every stored input; those of open findings live in ``open/``, out of the fuzzer's seeds (a
    seed that breaks an invariant would fail every short fuzz run until it is fixed)."""
    return sorted(
        path for folder in (REGRESSIONS, REGRESSIONS / "open") for pattern in ("*.bz2", "*.in")
        for path in folder.glob(pattern)
    )  # fmt: skip


def _name_and_format(path: Path) -> tuple[str, str]:
    name, fmt = path.name.removesuffix(".bz2").removesuffix(".in").rsplit(".", 1)
    return name, fmt


def _load(path: Path, fmt: str) -> SparseBytes:
    if path.suffix == ".in":
        decoded, store, fix = decode_input(path.read_bytes(), ATHERIS_FORMATS)
        assert (decoded, fix) == (fmt, False), "a stored input names its format and has its checksums"
        return store
    return SparseBytes.from_bytes(bz2.decompress(path.read_bytes()))


def _inputs() -> list:
    params = []
    for path in _stored():
        name, fmt = _name_and_format(path)
        marks = [pytest.mark.xfail(reason=OPEN[name], strict=True)] if name in OPEN else []
        params.append(pytest.param(path, fmt, id=name, marks=marks))
    return params


def test_every_open_finding_has_an_input() -> None:
    names = {_name_and_format(p)[0] for p in _stored()}
    assert set(OPEN) <= names


@pytest.mark.parametrize(("path", "fmt"), _inputs())
def test_stored_input_keeps_every_invariant(path: Path, fmt: str) -> None:
    store = _load(path, fmt)
    summary = run_campaign([Seed(path.name, fmt, store, Layout(()))], iter([(0, UNMUTATED)]))
    assert summary.cases == 1
    assert not summary.failures, summary.failures[0].outcome.detail
