"""Coverage-guided fuzzing of format plugins with atheris (libFuzzer), through :mod:`.fuzz`'s invariants.

libFuzzer mutates byte strings and keeps those that reach new code. An image is megabytes of mostly
zeros, where random byte mutations would rarely touch structure, so a fuzz input is a compact
*encoding* of an image: only its non-zero runs, each with its offset (:func:`encode_image`,
:func:`decode_input`)::

    byte 0        format: index into the runner's format list (modulo its length)
    byte 1        flags: bit 0 = recompute the CRC-32C fields the format's layout names
    bytes 2..9    file size, u64 LE (at most MAX_FILE_SIZE; the file is sparse, so size is cheap)
    then records  file offset u64 LE, length u16 LE, that many bytes, written in order

Mutations of a record's bytes land on a structure; mutations of its offset move it; the checksum
flag carries a mutation past CRC checks into the logic behind them, as :func:`.fuzz.mutate` does.

Each input runs :func:`.fuzz.check_invariants` (probe, read-only open/map/read/info/check,
``check -r all``, reopen, guest write) under the same per-case time bound (``SIGALRM``) and memory
bound (``RLIMIT_AS``) as the structure-aware campaigns. A broken invariant is stored as a
regression input (``<name>.<format>.in``, the encoded input, and a ``.txt`` note; ``tests/fuzz``
replays them) and fuzzing goes on.

:func:`run` starts the fuzzer in a child process for a given time and returns a
:class:`AtherisSummary` (executions, corpus size, coverage gained, crashes) parsed from libFuzzer's
output; :func:`fuzz_main` is the child's side. atheris is imported only there (the ``fuzz`` extra).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pkgutil
import re
import signal
import struct
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fuzz import (
    UNMUTATED,
    FuzzCase,
    Layout,
    Limits,
    SparseBytes,
    bound_this_process,
    check_invariants,
    fix_checksums_of,
)

__all__ = [
    "AtherisSummary",
    "adopt_artifacts",
    "decode_input",
    "encode_image",
    "encoded_records",
    "fuzz_main",
    "run",
]

_HEADER = struct.Struct("<BBQ")
_RECORD = struct.Struct("<QH")
FLAG_FIX_CHECKSUMS = 1
#: a record holds at most this many bytes (the u16 length)
MAX_RECORD = 0xFFFF
#: the largest file an input may describe; beyond it the size is clipped (hostile sizes are the
#: structures' job to express, the file's own size only has to cover their targets)
MAX_FILE_SIZE = 1 << 40
#: runs of zeros shorter than this do not split a record (fewer, longer records)
_GAP = 32

#: per-case bounds for coverage-guided runs: smaller reads than the campaigns' (inputs are small,
#: and libFuzzer wants many executions a minute), and three times the time, since atheris's
#: instrumentation makes the plugins' Python loops that much slower (a hostile VDI map of half a
#: million entries is a legitimate multi-second check, not a hang)
ATHERIS_LIMITS = Limits(seconds_per_case=30.0, read_budget=2 << 20, read_chunk=1 << 20)

LayoutFunction = Callable[[SparseBytes], Layout]


# -- the encoding ----------------------------------------------------------------------------------


def _nonzero_runs(piece: bytes) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of the non-zero stretches of *piece*, joined over gaps shorter than _GAP."""
    pos, end = 0, len(piece)
    while pos < end:
        start = pos
        while start < end and piece[start] == 0:
            start += 1
        if start >= end:
            return
        stop, zeros = start, 0
        while stop < end and zeros < _GAP:
            zeros = zeros + 1 if piece[stop] == 0 else 0
            stop += 1
        yield start, stop - zeros
        pos = stop


def encode_image(
    format_index: int,
    store: SparseBytes,
    *,
    fix_checksums: bool = False,
    keep_below: int = MAX_FILE_SIZE,
    budget: int = 1 << 20,
) -> bytes:
    """Encode the image file *store* as a fuzz input (``SparseBytes.from_bytes`` wraps plain bytes).

    :param keep_below: only bytes before this file offset are kept (metadata of a large sample);
        the file keeps its full size, so structures still point inside it, at zeros.
    :param budget: at most this many data bytes are kept, in file order.
    """
    flags = FLAG_FIX_CHECKSUMS if fix_checksums else 0
    out = bytearray(_HEADER.pack(format_index, flags, min(store.size, MAX_FILE_SIZE)))
    kept = 0
    for offset, piece in store.chunks():
        if offset >= keep_below:
            break
        for start, stop in _nonzero_runs(piece[: keep_below - offset]):
            for at in range(start, stop, MAX_RECORD):
                run = piece[at : min(stop, at + MAX_RECORD, at + budget - kept)]
                if not run:
                    return bytes(out)
                out += _RECORD.pack(offset + at, len(run)) + run
                kept += len(run)
    return bytes(out)


def decode_input(data: bytes, formats: Sequence[str]) -> tuple[str, SparseBytes, bool]:
    """The format, file and checksum flag an input describes; any byte string decodes to something."""
    if len(data) < _HEADER.size:
        data = data.ljust(_HEADER.size, b"\0")
    format_index, flags, size = _HEADER.unpack_from(data)
    size = min(size, MAX_FILE_SIZE)
    store = SparseBytes(size)
    for offset, piece in encoded_records(data):
        if offset < size:
            store.write(piece[: size - offset], offset)
    return formats[format_index % len(formats)], store, bool(flags & FLAG_FIX_CHECKSUMS)


def encoded_records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(file offset, bytes)`` of each record of an input, in order (a cut-off last one shortened)."""
    pos = _HEADER.size
    while pos + _RECORD.size <= len(data):
        offset, length = _RECORD.unpack_from(data, pos)
        pos += _RECORD.size
        yield offset, data[pos : pos + length]
        pos += length


def fix_layout_checksums(store: SparseBytes, layout: Layout, fmt: str, host: Any = None) -> None:
    """Recompute every checksum *layout* names, by *fmt*'s own rule (its plugin's
    ``blockfmt_stamp_checksum``), so a mutation gets past the checksum checks."""
    if host is None:
        from ..host import default_host

        host = default_host()
    fix_checksums_of(store, layout, host.hooks(fmt))


# -- the child: one libFuzzer process ---------------------------------------------------------------


class _Target:
    """libFuzzer's TestOneInput: decode, run the invariants, store what breaks one."""

    def __init__(
        self,
        formats: Sequence[str],
        layouts: dict[str, LayoutFunction],
        findings: Path,
        limits: Limits,
        host: Any,
    ) -> None:
        self.formats = formats
        self.layouts = layouts
        self.findings = findings
        self.limits = limits
        self.host = host

    def __call__(self, data: bytes) -> None:
        fmt, store, fix = decode_input(data, self.formats)
        if fix and fmt in self.layouts:
            try:
                fix_layout_checksums(store, self.layouts[fmt](store), fmt, self.host)
            except Exception:
                pass
        original = store.copy()
        case = FuzzCase(0, UNMUTATED, fmt, store, ())
        signal.setitimer(signal.ITIMER_REAL, self.limits.seconds_per_case)
        try:
            outcome = check_invariants(case, host=self.host, limits=self.limits)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if outcome.failed:
            self._store(fmt, original, data, f"stage: {outcome.stage}\n{outcome.detail}")

    def _store(self, fmt: str, store: SparseBytes, data: bytes, note: str) -> None:
        """Keep the input as ``<name>.<format>.in``: the encoding of the file checked (checksums
        already fixed), which the regression test decodes and replays."""
        name = "atheris-" + hashlib.sha256(data).hexdigest()[:12]
        self.findings.mkdir(parents=True, exist_ok=True)
        encoded = encode_image(self.formats.index(fmt), store, budget=MAX_FILE_SIZE)
        (self.findings / f"{name}.{fmt}.in").write_bytes(encoded)
        (self.findings / f"{name}.txt").write_text(note.rstrip("\n") + "\n")
        print(f"atheris: invariant broken, input stored as {name}.{fmt}.in", file=sys.stderr, flush=True)


def fuzz_main(
    argv: Sequence[str],
    formats: Sequence[str],
    layouts: dict[str, LayoutFunction],
    findings: Path,
    *,
    instrument: Sequence[str] = ("blockfmt", "blockfmt_vhdx", "blockfmt_vdi"),
    limits: Limits = ATHERIS_LIMITS,
) -> None:
    """Run libFuzzer in this process (never returns): *argv* are libFuzzer's arguments.

    Every module of *instrument* is instrumented for coverage first (see :func:`_instrument`).
    """
    import atheris

    bound_this_process(limits)
    _instrument(atheris, instrument)
    from ..host import default_host

    host = default_host()
    target = _Target(formats, layouts, findings, limits, host)
    atheris.Setup([sys.argv[0], *argv], target)
    atheris.Fuzz()


def _instrument(atheris: Any, packages: Sequence[str]) -> None:
    """Give libFuzzer coverage of every module of *packages* (the harness itself left out).

    Modules not loaded yet are imported under atheris's import hook; those already loaded (the
    core, imported with this module) have their functions' code replaced in place.
    """
    loaded = {name for name in sys.modules if _covered(name, packages)}
    with atheris.instrument_imports(include=list(packages), exclude=[_HARNESS]):
        for name in packages:
            package = importlib.import_module(name)
            for info in pkgutil.walk_packages(package.__path__, name + ".", onerror=lambda _: None):
                if _covered(info.name, packages):
                    try:
                        importlib.import_module(info.name)
                    except ImportError:
                        pass  # runs only inside another program (the nbdkit plugin): not fuzzed
    for name in loaded:
        for obj in list(vars(sys.modules[name]).values()):
            for func in _functions_of(obj, name):
                atheris.instrument_func(func)


#: the harness's own modules get no coverage feedback
_HARNESS = "blockfmt.testing"


def _covered(name: str, packages: Sequence[str]) -> bool:
    in_package = any(name == p or name.startswith(p + ".") for p in packages)
    return in_package and not (name == _HARNESS or name.startswith(_HARNESS + "."))


def _functions_of(obj: Any, module: str) -> Iterator[Any]:
    """The plain functions *obj* defines in *module*: itself, or a class's methods and properties."""
    if getattr(obj, "__module__", None) != module:
        return
    if isinstance(obj, types.FunctionType):
        yield obj
    elif isinstance(obj, type):
        for attr in vars(obj).values():
            if isinstance(attr, staticmethod | classmethod):
                attr = attr.__func__
            if isinstance(attr, property):
                yield from (f for f in (attr.fget, attr.fset) if isinstance(f, types.FunctionType))
            elif isinstance(attr, types.FunctionType):
                yield attr


# -- the parent: run for a while and summarise ------------------------------------------------------


@dataclass
class AtherisSummary:
    """What a coverage-guided run did, from libFuzzer's status lines and the findings directory."""

    executions: int = 0
    seconds: float = 0.0
    corpus_before: int = 0
    corpus_after: int = 0
    coverage_start: int = 0
    coverage_end: int = 0
    features_start: int = 0
    features_end: int = 0
    new_units: int = 0
    crashes: list[str] = field(default_factory=list)
    returncode: int = 0

    def report(self) -> str:
        return (
            f"atheris: {self.executions} executions in {self.seconds:.0f} s "
            f"({self.executions / max(self.seconds, 1e-9):.1f}/s); corpus {self.corpus_before} -> "
            f"{self.corpus_after} inputs ({self.new_units} new); coverage {self.coverage_start} -> "
            f"{self.coverage_end} edges (+{self.coverage_end - self.coverage_start}), features "
            f"{self.features_start} -> {self.features_end}; crashes {len(self.crashes)}"
            + "".join(f"\n  stored: {name}" for name in self.crashes)
        )


_STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+)(?: corp: (\d+))?")
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)")


def parse_output(lines: Sequence[str], summary: AtherisSummary) -> None:
    """Fill *summary*'s counters from libFuzzer's ``#N INITED/NEW/pulse/DONE cov: ft: corp:`` lines."""
    for line in lines:
        status = _STATUS.match(line)
        if status:
            runs, kind, cov, ft = (int(status[1]), status[2], int(status[3]), int(status[4]))
            if kind == "INITED" or not summary.coverage_start:
                summary.coverage_start, summary.features_start = cov, ft
            summary.coverage_end, summary.features_end = cov, ft
            summary.executions = max(summary.executions, runs)
            continue
        stat = _STAT.match(line)
        if stat and stat[1] == "number_of_executed_units":
            summary.executions = int(stat[2])
        elif stat and stat[1] == "new_units_added":
            summary.new_units = int(stat[2])


def run(
    module: str,
    corpus: Path,
    findings: Path,
    seconds: int,
    *,
    extra_args: Sequence[str] = (),
    log: Path | None = None,
    limits: Limits = ATHERIS_LIMITS,
) -> AtherisSummary:
    """Fuzz for *seconds* in a child ``python -m module`` (which calls :func:`fuzz_main`).

    The per-case time bound is the child's ``SIGALRM`` (libFuzzer's ``-timeout`` would need the same
    signal); libFuzzer's ``-rss_limit_mb``, a little above the address-space bound, backs up the
    memory bound, and the whole child is killed if it overruns *seconds* by ten minutes.
    """
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in findings.iterdir()}
    summary = AtherisSummary(corpus_before=sum(1 for _ in corpus.iterdir()))
    argv = [
        sys.executable,
        "-m",
        module,
        "--child",
        "--findings",
        str(findings),
        "--",
        str(corpus),
        f"-max_total_time={seconds}",
        f"-rss_limit_mb={limits.memory // (1 << 20) + 1024}",
        "-max_len=1100000",
        "-print_final_stats=1",
        f"-report_slow_units={int(limits.seconds_per_case) * 2}",
        f"-artifact_prefix={findings}/",
        *extra_args,
    ]
    started = time.monotonic()
    proc = subprocess.run(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        errors="replace", timeout=seconds + 600,
    )  # fmt: skip
    summary.seconds = time.monotonic() - started
    summary.returncode = proc.returncode
    if log is not None:
        log.write_text(proc.stdout)
    parse_output(proc.stdout.splitlines(), summary)
    summary.corpus_after = sum(1 for _ in corpus.iterdir())
    for slow in findings.glob("slow-unit-*"):
        slow.unlink()  # only a note that an input was slow; the time bound is the invariant
    after = {p.name for p in findings.iterdir()}
    summary.crashes = sorted(
        name for name in after - before if name.endswith(".in") or name.startswith(_ARTIFACTS)
    )
    return summary


#: what libFuzzer itself writes for an input that killed the process (an escaped exception, the
#: RSS limit, its own timeout, a leak)
_ARTIFACTS = ("crash-", "oom-", "timeout-", "leak-")


def adopt_artifacts(
    findings: Path, names: Sequence[str], formats: Sequence[str], layouts: dict[str, LayoutFunction]
) -> list[str]:
    """Turn libFuzzer's own artifacts among *names* into stored inputs the replay test finds.

    An artifact is the raw fuzz input: it is decoded, its checksums fixed if its flag says so, and
    stored as ``atheris-<kind>-<hash>.<format>.in`` with a note, like :class:`_Target`'s findings.
    Returns the new list of names.
    """
    adopted = []
    for name in names:
        if not name.startswith(_ARTIFACTS):
            adopted.append(name)
            continue
        raw = (findings / name).read_bytes()
        fmt, store, fix = decode_input(raw, formats)
        if fix and fmt in layouts:
            try:
                fix_layout_checksums(store, layouts[fmt](store), fmt)
            except Exception:
                pass
        kind = name.split("-", 1)[0]
        stem = f"atheris-{kind}-{hashlib.sha256(raw).hexdigest()[:12]}"
        encoded = encode_image(formats.index(fmt), store, budget=MAX_FILE_SIZE)
        (findings / f"{stem}.{fmt}.in").write_bytes(encoded)
        (findings / f"{stem}.txt").write_text(f"stage: libFuzzer {kind} (the whole fuzzing process)\n")
        (findings / name).unlink()
        adopted.append(f"{stem}.{fmt}.in")
    return adopted


def child_args(argv: Sequence[str]) -> tuple[Path, list[str]]:
    """Split ``--findings DIR -- libFuzzer args`` (the child's command line built by :func:`run`)."""
    args = list(argv)
    findings = Path(os.getcwd()) / "fuzz-findings"
    if "--findings" in args:
        at = args.index("--findings")
        findings = Path(args[at + 1])
        del args[at : at + 2]
    if "--" in args:
        args.remove("--")
    return findings, args
