"""The coverage-guided harness: its input encoding, its failure store, and a short real libFuzzer run."""

from __future__ import annotations

import random

import pytest

import blockfmt
from blockfmt.testing.atheris_fuzz import (
    FLAG_FIX_CHECKSUMS,
    AtherisSummary,
    _Target,
    decode_input,
    encode_image,
    parse_output,
    run,
)
from blockfmt.testing.fuzz import SparseBytes

from .atheris_main import FORMATS, REPO, seed_corpus
from .layouts import LAYOUTS
from .test_harness import FORMAT, LIMITS, buggy_host, buggy_seed

MiB = 1 << 20


def test_encoding_round_trips_an_image(tmp_path) -> None:
    path = tmp_path / "t.vhdx"
    blockfmt.create(path, "vhdx", 8 * MiB, block_size=MiB)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(3 * MiB, b"\x01\x00" * 3000)
    data = path.read_bytes()
    encoded = encode_image(FORMATS.index("vhdx"), SparseBytes.from_bytes(data))
    assert len(encoded) < len(data) // 20  # only the non-zero runs
    fmt, store, fix = decode_input(encoded, FORMATS)
    assert (fmt, fix, store.to_bytes()) == ("vhdx", False, data)


def test_encoding_keeps_a_prefix_and_the_size() -> None:
    data = b"\x07" * 100 + bytes(5000) + b"\x08" * 100
    encoded = encode_image(2, SparseBytes.from_bytes(data), keep_below=4096, fix_checksums=True)
    fmt, store, fix = decode_input(encoded, FORMATS)
    assert (fmt, fix, store.size) == ("vdi", True, len(data))
    assert store.to_bytes() == b"\x07" * 100 + bytes(5100)


def test_any_bytes_decode_within_bounds() -> None:
    rng = random.Random(19)
    for _ in range(300):
        junk = rng.randbytes(rng.randrange(0, 200))
        fmt, store, _fix = decode_input(junk, FORMATS)
        assert fmt in FORMATS and 0 <= store.size <= 1 << 40
    _fmt, store, fix = decode_input(bytes([1, FLAG_FIX_CHECKSUMS]) + (1 << 62).to_bytes(8, "little"), FORMATS)
    assert fix and store.size == 1 << 40


def test_a_broken_invariant_is_stored_as_a_replayable_input(tmp_path) -> None:
    target = _Target((FORMAT,), {}, tmp_path, LIMITS, buggy_host())
    target(encode_image(0, buggy_seed(0).store))
    assert list(tmp_path.iterdir()) == []
    target(encode_image(0, buggy_seed(6).store))
    stored = sorted(p.name for p in tmp_path.iterdir())
    assert len(stored) == 2 and stored[0].endswith(".buggy.in") and stored[1].endswith(".txt")
    note = (tmp_path / stored[1]).read_text()
    assert note.startswith("stage: reopen after repair\n")
    assert "repair changed guest data without reporting a fixed corruption" in note
    _fmt, store, fix = decode_input((tmp_path / stored[0]).read_bytes(), (FORMAT,))
    assert not fix and store.to_bytes() == buggy_seed(6).store.to_bytes()


def test_libfuzzer_status_lines_are_summarised() -> None:
    summary = AtherisSummary()
    parse_output(
        [
            "#2\tINITED cov: 700 ft: 1400 corp: 15/90Kb exec/s: 0 rss: 60Mb",
            "#9\tNEW    cov: 720 ft: 1500 corp: 16/91Kb lim: 4 exec/s: 0 rss: 60Mb L: 3/3 MS: 1 Shuffle-",
            "#40\tDONE   cov: 730 ft: 1510 corp: 18/92Kb lim: 4 exec/s: 1 rss: 61Mb",
            "stat::number_of_executed_units: 40",
            "stat::new_units_added:          3",
        ],
        summary,
    )
    assert (summary.executions, summary.new_units) == (40, 3)
    assert (summary.coverage_start, summary.coverage_end) == (700, 730)
    assert (summary.features_start, summary.features_end) == (1400, 1510)


def test_short_real_run_executes_and_gains_nothing_bad(tmp_path, monkeypatch) -> None:
    """libFuzzer under atheris over every seed: inputs run, coverage is reported, nothing breaks."""
    pytest.importorskip("atheris")
    monkeypatch.chdir(REPO)  # the child is ``python -m tests.fuzz.atheris_main``
    corpus, findings = tmp_path / "corpus", tmp_path / "findings"
    seeded = seed_corpus(corpus)
    assert seeded >= 7
    log = tmp_path / "libfuzzer.log"
    summary = run("tests.fuzz.atheris_main", corpus, findings, 120, extra_args=["-runs=40"], log=log)
    assert summary.returncode == 0, summary.report() + "\n" + log.read_text()[-3000:]
    assert summary.executions >= 40
    assert summary.coverage_end >= summary.coverage_start > 0
    assert summary.corpus_after >= seeded
    assert summary.crashes == [], summary.report()
    assert set(LAYOUTS) == set(FORMATS)
