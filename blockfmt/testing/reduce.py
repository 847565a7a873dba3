"""Shrink a fuzz input that breaks an invariant to a small one that breaks it the same way.

A coverage-guided finding is whatever libFuzzer's mutations left behind: megabytes of sample
metadata around the few bytes that matter. A reviewer, and the replay test, want the few bytes.
:func:`reduce_input` works on the compact encoding of :mod:`.atheris_fuzz` (non-zero runs with
their offsets): it drops records, halving the groups it tries (delta debugging), then trims each
remaining record from either end, and keeps every step after which the input still fails *the same
way* (same stage, same kind of error; see :func:`failure_signature`). Each try runs in a forked,
memory- and time-bounded worker (:func:`.fuzz.run_campaign`), as the replay test does, so a hang or
a dying worker is a reproducible failure too. The search stops after a wall-time budget and returns
the smallest input found so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..host import Host, default_host
from .atheris_fuzz import (
    MAX_FILE_SIZE,
    LayoutFunction,
    decode_input,
    encode_image,
    encoded_records,
    fix_layout_checksums,
)
from .fuzz import UNMUTATED, CaseOutcome, Layout, Limits, Seed, SparseBytes, run_campaign

__all__ = ["Reduction", "failure_signature", "reduce_findings", "reduce_input"]

Record = tuple[int, bytes]
#: the bounds the regression replay runs under (run_campaign's defaults): a reproducer fails there
REPLAY_LIMITS = Limits()


def failure_signature(outcome: CaseOutcome) -> tuple[str, str] | None:
    """``(stage, kind)`` of a failed outcome, None for a pass: *kind* is the exception's type (the
    last traceback line up to its colon) or the hang/worker message, without numbers that move as
    the input shrinks."""
    if not outcome.failed:
        return None
    last = outcome.detail.strip().splitlines()[-1] if outcome.detail.strip() else ""
    return outcome.stage, last.split(":", 1)[0]


@dataclass
class Reduction:
    """The smallest failing input found: its encoding (checksums fixed, flag clear) and the search."""

    data: bytes
    signature: tuple[str, str] | None
    records_before: int
    records_after: int
    bytes_before: int
    bytes_after: int
    tries: int
    seconds: float

    def report(self) -> str:
        if self.signature is None:
            return "does not fail under the replay bounds: not reduced"
        return (
            f"reduced {self.records_before} -> {self.records_after} records, {self.bytes_before} -> "
            f"{self.bytes_after} data bytes in {self.tries} tries, {self.seconds:.0f} s "
            f"(fails at {self.signature[0]}: {self.signature[1]})"
        )


class _Oracle:
    """Builds the file a record list describes and tells whether it still fails the same way."""

    def __init__(
        self,
        fmt: str,
        size: int,
        layout_of: LayoutFunction | None,
        limits: Limits,
        make_host: Callable[[], Host],
    ) -> None:
        self.fmt, self.size, self.layout_of = fmt, size, layout_of
        self.limits, self.make_host = limits, make_host
        self.tries = 0

    def store(self, records: Sequence[Record]) -> SparseBytes:
        store = SparseBytes(self.size)
        for offset, piece in records:
            store.write(piece, offset)
        if self.layout_of is not None:
            try:
                fix_layout_checksums(store, self.layout_of(store), self.fmt)
            except Exception:
                pass  # the layout no longer parses: the checksums stay as they are
        return store

    def signature(self, records: Sequence[Record]) -> tuple[str, str] | None:
        self.tries += 1
        seed = Seed("reduce", self.fmt, self.store(records), Layout(()))
        summary = run_campaign([seed], iter([(0, UNMUTATED)]), limits=self.limits, make_host=self.make_host)
        return failure_signature(summary.failures[0].outcome) if summary.failures else None


def _records(store: SparseBytes) -> list[Record]:
    """The non-zero runs of *store* as records (the encoding's own split)."""
    return list(encoded_records(encode_image(0, store, budget=MAX_FILE_SIZE)))


def reduce_input(
    data: bytes,
    formats: Sequence[str],
    layouts: dict[str, LayoutFunction],
    *,
    seconds: float = 120.0,
    limits: Limits = REPLAY_LIMITS,
    make_host: Callable[[], Host] = default_host,
) -> Reduction:
    """The smallest input (within *seconds*) that fails as *data* does; *data* itself if it passes.

    Checksums are recomputed after every cut when the whole input fails the same way with them
    recomputed (the fuzzer got past a CRC check by recomputing it), so records inside checksummed
    structures can be cut too.
    """
    started = time.monotonic()
    fmt, original, fix = decode_input(data, formats)
    if fix and fmt in layouts:
        fix_layout_checksums(original, layouts[fmt](original), fmt)
    records = _records(original)
    oracle = _Oracle(fmt, original.size, None, limits, make_host)
    target = oracle.signature(records)  # the input as the replay test sees it
    if target is not None and fmt in layouts:
        oracle.layout_of = layouts[fmt]
        if oracle.signature(records) != target:  # the failure needs the checksums as they are
            oracle.layout_of = None
    before = (len(records), sum(len(p) for _, p in records))

    def fails(candidate: list[Record]) -> bool:
        return time.monotonic() - started < seconds and oracle.signature(candidate) == target

    if target is not None:
        records = _drop_records(records, fails)
        records = _trim_records(records, fails)
    store = oracle.store(records)
    return Reduction(
        encode_image(formats.index(fmt), store, budget=MAX_FILE_SIZE),
        target,
        before[0],
        len(records),
        before[1],
        sum(len(p) for _, p in records),
        oracle.tries,
        time.monotonic() - started,
    )


def _drop_records(records: list[Record], fails: Callable[[list[Record]], bool]) -> list[Record]:
    """Delta debugging over whole records: try removing groups, halving the group size."""
    group = max(1, len(records) // 2)
    while records:
        start, removed = 0, False
        while start < len(records):
            candidate = records[:start] + records[start + group :]
            if fails(candidate):
                records, removed = candidate, True
            else:
                start += group
        if group == 1 and not removed:
            break
        group = max(1, group // 2)
    return records


def _trim_records(records: list[Record], fails: Callable[[list[Record]], bool]) -> list[Record]:
    """Zero each record's front or back half while it still fails (zeros are the file's default)."""
    for index in range(len(records)):
        offset, piece = records[index]
        cut = len(piece) // 2
        while cut:
            for trial in ((offset + cut, piece[cut:]), (offset, piece[: len(piece) - cut])):
                candidate = [*records[:index], trial, *records[index + 1 :]]
                if fails(candidate):
                    records, (offset, piece) = candidate, trial
                    break
            else:
                cut //= 2
                continue
            cut = min(cut, len(piece) // 2)
    return [(o, p) for o, p in records if p]


def reduce_findings(
    findings: Path,
    names: Sequence[str],
    formats: Sequence[str],
    layouts: dict[str, LayoutFunction],
    *,
    seconds: float,
    limits: Limits = REPLAY_LIMITS,
    make_host: Callable[[], Host] = default_host,
) -> list[str]:
    """Reduce each stored input *names* of *findings* and store what fails as ``<name>-min.<fmt>.in``.

    *seconds* is the budget for all of them, shared out evenly; a reduction identical to one already
    stored (many findings are one bug) is not stored twice. Returns one report line per input.
    """
    lines: list[str] = []
    stored = {p.read_bytes() for p in findings.glob("*-min.*.in")}
    inputs = [n for n in names if n.endswith(".in") and "-min." not in n]
    for count, name in enumerate(inputs):
        share = seconds / (len(inputs) - count)
        started = time.monotonic()
        stem, fmt = name.removesuffix(".in").rsplit(".", 1)
        reduction = reduce_input(
            (findings / name).read_bytes(), formats, layouts, seconds=share, limits=limits,
            make_host=make_host,
        )  # fmt: skip
        seconds -= time.monotonic() - started
        if reduction.signature is None:
            lines.append(f"{name}: {reduction.report()}")
            continue
        if reduction.data in stored:
            lines.append(f"{name}: {reduction.report()}; the same as a stored reduction")
            continue
        stored.add(reduction.data)
        (findings / f"{stem}-min.{fmt}.in").write_bytes(reduction.data)
        stage, kind = reduction.signature
        (findings / f"{stem}-min.txt").write_text(
            f"stage: {stage}\n{kind}\nreduced from {name}: {reduction.report()}\n"
        )
        lines.append(f"{name}: {reduction.report()}; stored as {stem}-min.{fmt}.in")
    return lines
