"""``blockfmt-img info`` imports only what it uses (issue 15: start-up time).

A guard on the outcome rather than a timing: a fresh interpreter runs ``info`` of a small image
of each built-in format and reports which modules the run added to ``sys.modules``. Each module
named here cost milliseconds of every start when it was imported at module level, and ``info``
needs none of them; timing the start itself is the benchmark's job (``start-up FMT`` rows).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import blockfmt
from blockfmt.plugins import AUTOLOAD_DISABLE_ENV, SELECT_ENV

#: standard-library modules ``info`` does not need, each a visible share of a start when imported
NOT_ON_INFO_PATH = (
    "argparse",
    "ctypes",
    "datetime",
    "email",
    "getopt",
    "gettext",
    "importlib.metadata",
    "importlib.resources",
    "json",
    "logging",
    "pathlib",
    "shutil",
    "subprocess",
    "tempfile",
    "textwrap",
    "urllib",
    "zipfile",
)

#: runs ``info`` in-process and prints the modules the run added (before: what ``site`` loaded)
_PROBE = """
import sys
before = set(sys.modules)
from blockfmt.cli.img import main
code = main(["info", sys.argv[1]])
added = sorted(set(sys.modules) - before)
print(repr([code, added]))
"""


def _modules_added_by_info(path: Path) -> list[str]:
    """The modules ``info`` of *path* adds, the built-in plugins only: what a third-party plugin
    installed beside blockfmt imports (the example plugin, in the test environment) is its own."""
    env = dict(os.environ, **{AUTOLOAD_DISABLE_ENV: "1"})
    env.pop(SELECT_ENV, None)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    code, added = ast.literal_eval(result.stdout.splitlines()[-1])
    assert code == 0, result.stdout
    return added


@pytest.mark.parametrize("fmt", ["raw", "vhdx", "vdi"])
def test_info_imports_no_heavy_module(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"small.{fmt}"
    blockfmt.create(str(path), fmt, 64 << 20)
    added = _modules_added_by_info(path)
    heavy = [m for m in added if m in NOT_ON_INFO_PATH or m.partition(".")[0] in NOT_ON_INFO_PATH]
    assert heavy == [], f"info of a {fmt} image imports {heavy}"


def test_info_of_a_raw_image_defines_no_dataclass(tmp_path: Path) -> None:
    """The value types on the common path are :mod:`blockfmt.records` classes: a dataclass costs
    1-3 million instructions to define, and raw needs no format plugin module that has one."""
    path = tmp_path / "small.raw"
    blockfmt.create(str(path), "raw", 1 << 20)
    assert "dataclasses" not in _modules_added_by_info(path)
