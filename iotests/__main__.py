"""``python -m iotests``: run scenarios on the qemu and/or blockfmt backend, like ``./check``.

Examples::

    python -m iotests -f vhdx 064 070
    python -m iotests -f vdi --backend both quick
    python -m iotests -f vhdx --backend blockfmt -d     # show diffs of failures
    python -m iotests -f vhdx --regen mytest            # write mytest.out from real QEMU
    python -m iotests --qemu-suite ../shared/reference/qemu-7.2/tests/qemu-iotests -f vdi
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .runner import (
    FAIL,
    NOT_RUN,
    PASS,
    RECORDED,
    Result,
    Scenario,
    discover,
    make_backend,
    record_scenario,
    regenerate,
    run_scenario,
    select,
    unified_diff,
)

__all__ = ["main"]

BACKEND_CHOICES = {"qemu": ("qemu",), "blockfmt": ("blockfmt",), "both": ("qemu", "blockfmt")}


def _installed_formats() -> list[str]:
    """The formats of the installed blockfmt plugins (the ``-f`` choices)."""
    from blockfmt.host import default_host

    return sorted(default_host().formats)


def _print_result(result: Result, show_diff: bool) -> None:
    line = f"{result.scenario:<12} {result.imgfmt:<5} {result.backend:<9} {result.status}"
    if result.status != PASS:
        line += f"  [{result.reason}]"
    if result.status == PASS:
        line += f"  ({result.seconds:.1f} s)"
    print(line, flush=True)
    if show_diff and result.status == FAIL:
        print(result.diff or result.output, end="" if (result.diff or result.output).endswith("\n") else "\n")


def _run_scenarios(scenarios: list[Scenario], formats: Sequence[str], backends: Sequence[str], args) -> int:
    counts = {PASS: 0, FAIL: 0, NOT_RUN: 0}
    for imgfmt in formats:
        if not any(imgfmt in scenario.formats for scenario in scenarios):
            print(f"{'-':<12} {imgfmt:<5} {'-':<9} {NOT_RUN}  [no selected scenario supports {imgfmt}]")
            counts[NOT_RUN] += 1
    for scenario in scenarios:
        for imgfmt in formats:
            if imgfmt not in scenario.formats:
                continue
            outputs = {}
            for name in backends:
                result = run_scenario(scenario, imgfmt, make_backend(name), keep=args.keep)
                counts[result.status] += 1
                _print_result(result, args.diff)
                if result.status != NOT_RUN:
                    outputs[name] = result.output
            if len(outputs) == 2 and outputs["qemu"] != outputs["blockfmt"]:
                print(f"{scenario.name:<12} {imgfmt:<5} backends differ:")
                print(unified_diff(outputs["qemu"], outputs["blockfmt"], "qemu", "blockfmt"), end="")
    print(f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[NOT_RUN]} not run")
    if counts[FAIL]:
        return 1
    if not counts[PASS]:
        print("nothing was tested", file=sys.stderr)
        return 1
    return 0


def _regen(scenarios: list[Scenario], formats: Sequence[str], keep: bool) -> int:
    """Record each scenario with real QEMU for every chosen format it supports; write its ``.out``."""
    status = 0
    qemu = make_backend("qemu")
    for scenario in scenarios:
        transcripts: dict[str, str] = {}
        for imgfmt in (f for f in formats if f in scenario.formats):
            result = record_scenario(scenario, imgfmt, qemu, keep=keep)
            if result.status != RECORDED:
                print(f"{scenario.name:<12} {imgfmt:<5} {result.status}  [{result.reason}]", file=sys.stderr)
                if result.status == FAIL:
                    print(result.output, file=sys.stderr)
                status = 1
                break
            transcripts[imgfmt] = result.output
        else:
            if not transcripts:
                supported = ", ".join(formats)
                print(f"{scenario.name:<12} not run  [supports none of {supported}]", file=sys.stderr)
                status = 1
                continue
            for path in regenerate(scenario, transcripts):
                print(f"{scenario.name:<12} wrote {path}")
    return status


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _qemu_suite(suite_dir: Path, formats: Sequence[str], args) -> int:
    from .qemu_suite import compare, default_tests, format_table, regressions, run_both

    status = 0
    for imgfmt in formats:
        tests = args.tests or default_tests(imgfmt)
        try:
            qemu, blockfmt, scratch = run_both(
                suite_dir, imgfmt, tests, keep=args.keep, jobs=args.jobs, progress=_progress
            )
        except FileNotFoundError as err:
            print(f"python -m iotests: error: {err}", file=sys.stderr)
            return 2
        for who, run in (("qemu", qemu), ("blockfmt", blockfmt)):
            if not run.outcomes and not run.skipped:
                print(f"{imgfmt} {who}: ./check judged no test (exit {run.returncode}); its output ends:")
                print("".join(run.output.splitlines(keepends=True)[-20:]), end="")
        rows = compare(qemu, blockfmt)
        print(format_table(rows, imgfmt, show_all=args.all, detail=args.detail))
        print(f"wall time: qemu {qemu.seconds:.0f} s, blockfmt {blockfmt.seconds:.0f} s")
        if args.keep:
            print(f"kept {scratch}")
        worse = regressions(rows)
        if worse:
            print(f"{imgfmt}: blockfmt fails where QEMU passes: {' '.join(worse)}")
            status = 1
        if not any(outcome.status == PASS for _, _, outcome in rows):
            print(f"{imgfmt}: blockfmt passed no test", file=sys.stderr)
            status = 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected scenarios; 0 when none failed, 1 otherwise, 2 for bad arguments."""
    parser = argparse.ArgumentParser(prog="python -m iotests", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-f",
        "--format",
        dest="formats",
        action="append",
        choices=_installed_formats(),
        help="image format, from the installed plugins (repeatable; default: every format with a scenario)",
    )
    parser.add_argument("--backend", choices=tuple(BACKEND_CHOICES), default="both")
    parser.add_argument("-d", "--diff", action="store_true", help="print the diff of every failure")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's TEST_DIR")
    parser.add_argument(
        "--regen", action="store_true", help="write the scenarios' expected .out files from real QEMU"
    )
    suite = parser.add_argument_group("QEMU's own suite")
    suite.add_argument(
        "--qemu-suite",
        metavar="DIR",
        type=Path,
        help="run QEMU's ./check in (a copy of) the qemu-iotests folder DIR with QEMU and with blockfmt",
    )
    suite.add_argument("-j", "--jobs", type=int, default=1, help="check's parallel jobs (default 1)")
    suite.add_argument("--all", action="store_true", help="list tests neither run ran, too")
    suite.add_argument("--detail", type=int, default=0, metavar="N", help="N diff lines under failures")
    parser.add_argument(
        "tests",
        nargs="*",
        help="scenario names or groups (default: auto); with --qemu-suite, check's test arguments",
    )
    args = parser.parse_args(argv)
    if args.qemu_suite is not None:
        if not args.formats:
            parser.error("--qemu-suite needs -f FORMAT")
        return _qemu_suite(args.qemu_suite, args.formats, args)
    scenarios_found = discover()
    try:
        scenarios = select(scenarios_found, args.tests)
    except KeyError as err:
        parser.error(f"no scenario or group named {err}")
    supported = {imgfmt for scenario in scenarios_found.values() for imgfmt in scenario.formats}
    formats = args.formats or [f for f in _installed_formats() if f in supported]
    if args.regen:
        return _regen(scenarios, formats, args.keep)
    return _run_scenarios(scenarios, formats, BACKEND_CHOICES[args.backend], args)


if __name__ == "__main__":
    sys.exit(main())
