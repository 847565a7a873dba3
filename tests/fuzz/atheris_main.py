"""Coverage-guided fuzzing of raw, VHDX and VDI with atheris (``tox -e fuzz``).

``python -m tests.fuzz.atheris_main --seconds N`` from the repository root runs it directly.

The parent seeds the corpus (small images blockfmt creates, a dirty log, the shared samples cut to
their metadata, the stored regression inputs), runs libFuzzer in a child for ``--seconds`` and prints
executions, corpus size, coverage gained and crashes. Every broken invariant is stored in
``--findings`` (default: ``tests/fuzz/regressions``, which ``test_regressions.py`` replays), so a
crash is a failing test until it is fixed; libFuzzer's own crash/oom/timeout artifacts are stored
the same way. Then each finding is reduced to a minimal reproducer (``<name>-min.<format>.in``,
:mod:`blockfmt.testing.reduce`), stored beside it. Exit status 1 when something was found.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REGRESSIONS = Path(__file__).resolve().parent / "regressions"
FORMATS = ("raw", "vhdx", "vdi")
#: samples (under SAMPLE_IMG_DIR or ../shared/sample_images) cut to what lies before this offset
SAMPLES = (
    "iotest-dirtylog-10G-4M.vhdx.bz2",
    "iotest-dynamic-1G.vhdx.bz2",
    "test-disk2vhd.vhdx.bz2",
    "real/discutils-vhdx-log-replay.vhdx.gz",
)
SAMPLE_METADATA_END = 4 << 20
MiB = 1 << 20


def _samples_dir() -> Path:
    override = os.environ.get("SAMPLE_IMG_DIR")
    if override:
        return Path(override)
    for parent in REPO.parents:
        candidate = parent / "shared" / "sample_images"
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "sample_images"


def _decompress(path: Path) -> bytes:
    opener = bz2.open if path.suffix == ".bz2" else gzip.open
    with opener(path, "rb") as src:
        return src.read()


def _created(workdir: Path) -> Iterator[tuple[str, str, bytes]]:
    """Small images blockfmt makes: every format, dynamic and fixed, and a VHDX whose log is live."""
    import blockfmt

    yield "raw", "raw", bytes(range(256)) * 64
    for name, fmt, size, options in (
        ("vhdx-dynamic", "vhdx", 8 * MiB, {"block_size": MiB}),
        ("vhdx-fixed", "vhdx", 3 * MiB, {"block_size": MiB, "subformat": "fixed"}),
        ("vdi-dynamic", "vdi", 8 * MiB, {}),
        ("vdi-static", "vdi", 3 * MiB, {"static": True}),
    ):
        path = workdir / f"{name}.{fmt}"
        blockfmt.create(path, fmt, size, **options)
        with blockfmt.open(path, fmt, read_only=False) as image:
            image.write_at(0, b"\xa5" * 4096)
            image.write_at(5 * MiB % size, b"\x5a" * 512)
        yield name, fmt, path.read_bytes()
    yield "vhdx-live-log", "vhdx", _with_live_log(workdir / "vhdx-dynamic.vhdx")


def _with_live_log(path: Path) -> bytes:
    """The dynamic VHDX with its headers' LogGuid set to its last log entry's: a log to replay.

    The headers' CRCs are left stale; the input's checksum flag has them recomputed.
    """
    from blockfmt_vhdx.log_structs import LOG_ENTRY_SIGNATURE

    data = bytearray(path.read_bytes())
    log_at = data.find(LOG_ENTRY_SIGNATURE, MiB)
    guid = bytes(data[log_at + 32 : log_at + 48])
    for header in (64 * 1024, 128 * 1024):
        data[header + 48 : header + 64] = guid
    return bytes(data)


def seed_corpus(corpus: Path) -> int:
    """Write the seeds into *corpus* (once: an existing corpus is kept); returns how many."""
    from blockfmt.testing.atheris_fuzz import encode_image
    from blockfmt.testing.fuzz import SparseBytes

    corpus.mkdir(parents=True, exist_ok=True)
    if any(corpus.iterdir()):
        return 0
    count = 0

    def put(name: str, fmt: str, data: bytes, **kwargs: object) -> None:
        nonlocal count
        encoded = encode_image(FORMATS.index(fmt), SparseBytes.from_bytes(data), **kwargs)  # type: ignore[arg-type]
        (corpus / f"seed-{name}").write_bytes(encoded)
        count += 1

    with tempfile.TemporaryDirectory(prefix="blockfmt-atheris-") as tmp:
        for name, fmt, data in _created(Path(tmp)):
            put(name, fmt, data, fix_checksums=name == "vhdx-live-log")
    samples = _samples_dir()
    for relative in SAMPLES:
        path = samples / relative
        if path.exists():
            put(path.name.split(".")[0], "vhdx", _decompress(path), keep_below=SAMPLE_METADATA_END)
    for path in sorted(REGRESSIONS.glob("*.bz2")):
        name, fmt = path.name.removesuffix(".bz2").rsplit(".", 1)
        put(name, fmt, bz2.decompress(path.read_bytes()), keep_below=SAMPLE_METADATA_END)
    for path in sorted(REGRESSIONS.glob("*.in")):
        (corpus / f"seed-{path.stem}").write_bytes(path.read_bytes())
        count += 1
    return count


def _child(argv: list[str]) -> None:
    from blockfmt.testing.atheris_fuzz import child_args, fuzz_main

    from .layouts import LAYOUTS

    findings, libfuzzer_args = child_args(argv)
    fuzz_main(libfuzzer_args, FORMATS, LAYOUTS, findings)


def replay(corpus: Path) -> int:
    """Run every input of *corpus* through the invariants without atheris (for coverage.py)."""
    from blockfmt.testing.atheris_fuzz import ATHERIS_LIMITS, decode_input, fix_layout_checksums
    from blockfmt.testing.fuzz import UNMUTATED, FuzzCase, check_invariants

    from .layouts import LAYOUTS

    if not corpus.is_dir():
        print(f"atheris replay: no corpus at {corpus} (a fuzz run makes one)")
        return 0
    failures = 0
    inputs = sorted(p for p in corpus.iterdir() if p.is_file())
    for path in inputs:
        fmt, store, fix = decode_input(path.read_bytes(), FORMATS)
        if fix:
            try:
                fix_layout_checksums(store, LAYOUTS[fmt](store), fmt)
            except Exception:
                pass
        outcome = check_invariants(FuzzCase(0, UNMUTATED, fmt, store, ()), limits=ATHERIS_LIMITS)
        if outcome.failed:
            failures += 1
            print(f"{path.name}: {outcome.stage}: {outcome.detail.splitlines()[-1]}")
    print(f"atheris replay: {len(inputs)} inputs, {failures} broke an invariant")
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        _child(argv[1:])
        return 0
    if argv[:1] == ["--replay"]:
        return replay(Path(argv[1]))
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.atheris_main", description=__doc__)
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("BLOCKFMT_FUZZ_SECONDS", "300")))
    parser.add_argument("--corpus", type=Path, default=REPO / "build" / "fuzz-corpus")
    parser.add_argument("--findings", type=Path, default=REGRESSIONS)
    parser.add_argument("--log", type=Path, default=None, help="keep libFuzzer's whole output here")
    parser.add_argument(
        "--reduce-seconds",
        type=float,
        default=600.0,
        help="wall time for reducing the findings to minimal reproducers (<name>-min.<format>.in)",
    )
    parser.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags, after --")
    args = parser.parse_args(argv)

    from blockfmt.testing.atheris_fuzz import adopt_artifacts, run
    from blockfmt.testing.reduce import reduce_findings

    from .layouts import LAYOUTS

    seeded = seed_corpus(args.corpus)
    if seeded:
        print(f"atheris: seeded {args.corpus} with {seeded} inputs")
    summary = run(
        "tests.fuzz.atheris_main",
        args.corpus,
        args.findings,
        args.seconds,
        extra_args=args.libfuzzer,
        log=args.log,
    )
    summary.crashes = adopt_artifacts(args.findings, summary.crashes, FORMATS, LAYOUTS)
    print(summary.report())
    if summary.crashes and args.reduce_seconds > 0:
        print(f"atheris: reducing {len(summary.crashes)} findings (at most {args.reduce_seconds} s)")
        for line in reduce_findings(
            args.findings, summary.crashes, FORMATS, LAYOUTS, seconds=args.reduce_seconds
        ):
            print("  " + line)
    return 1 if summary.crashes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
