"""The example third-party plugin in ``examples/blockfmt-example`` passes the conformance suite.

The README's test command installs it (``pip install ./examples/blockfmt-example``) as any
third-party distribution is installed; its own test directory is then run the way its author would
run it, in a separate pytest process, from its own directory.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from blockfmt.testing.qemu import in_ci

from ..conftest import REPO

EXAMPLE = REPO / "examples" / "blockfmt-example"


@pytest.fixture(scope="module")
def example_installed() -> None:
    """Skip locally when the example is not installed; under CI=true that is a failure."""
    if importlib.util.find_spec("blockfmt_example") is None:
        message = "the example plugin is not installed: pip install ./examples/blockfmt-example"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


def test_example_plugin_passes_the_conformance_suite(example_installed: None) -> None:
    """Everything passes; the QEMU round trip is SKIPPED with its reason, not counted as passed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLOCKFMT_", "PYTEST_"))}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(
        r"SKIPPED \[1\] .*conformance\.py:\d+: QEMU does not know the format 'example' "
        r"\(the qemu_format fixture is None\)",
        run.stdout,
    ), run.stdout[-3000:]
    summary = run.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed, 1 skipped in .*", summary), summary
