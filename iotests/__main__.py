"""``python -m iotests``: run scenarios on the qemu and/or blockfmt backend, like ``./check``.

Examples::

    python -m iotests -f vhdx 064 070
    python -m iotests -f vdi --backend both quick
    python -m iotests -f vhdx --backend blockfmt -d     # show diffs of failures
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .runner import FAIL, NOT_RUN, PASS, Result, discover, make_backend, run_scenario, select, unified_diff

__all__ = ["main"]

BACKEND_CHOICES = {"qemu": ("qemu",), "blockfmt": ("blockfmt",), "both": ("qemu", "blockfmt")}


def _print_result(result: Result, show_diff: bool) -> None:
    line = f"{result.scenario:<12} {result.imgfmt:<5} {result.backend:<9} {result.status}"
    if result.status != PASS:
        line += f"  [{result.reason}]"
    if result.status == PASS:
        line += f"  ({result.seconds:.1f} s)"
    print(line, flush=True)
    if show_diff and result.status == FAIL:
        print(result.diff or result.output, end="" if (result.diff or result.output).endswith("\n") else "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected scenarios; 0 when none failed, 1 otherwise, 2 for bad arguments."""
    parser = argparse.ArgumentParser(prog="python -m iotests", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-f",
        "--format",
        dest="formats",
        action="append",
        choices=("vhdx", "vdi", "raw"),
        help="image format (repeatable; default: vhdx and vdi)",
    )
    parser.add_argument("--backend", choices=tuple(BACKEND_CHOICES), default="both")
    parser.add_argument("-d", "--diff", action="store_true", help="print the diff of every failure")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's TEST_DIR")
    parser.add_argument("tests", nargs="*", help="scenario names or groups (default: auto)")
    args = parser.parse_args(argv)
    try:
        scenarios = select(discover(), args.tests)
    except KeyError as err:
        parser.error(f"no scenario or group named {err}")
    counts = {PASS: 0, FAIL: 0, NOT_RUN: 0}
    for scenario in scenarios:
        for imgfmt in args.formats or ("vhdx", "vdi"):
            if imgfmt not in scenario.formats:
                continue
            outputs = {}
            for name in BACKEND_CHOICES[args.backend]:
                result = run_scenario(scenario, imgfmt, make_backend(name), keep=args.keep)
                counts[result.status] += 1
                _print_result(result, args.diff)
                if result.status != NOT_RUN:
                    outputs[name] = result.output
            if len(outputs) == 2 and outputs["qemu"] != outputs["blockfmt"]:
                print(f"{scenario.name:<12} {imgfmt:<5} backends differ:")
                print(unified_diff(outputs["qemu"], outputs["blockfmt"], "qemu", "blockfmt"), end="")
    print(f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[NOT_RUN]} not run")
    return 1 if counts[FAIL] else 0


if __name__ == "__main__":
    sys.exit(main())
