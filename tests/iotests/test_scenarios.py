"""Every iotests scenario, on every format it supports, on both backends (``python -m iotests``)."""

from __future__ import annotations

import pytest

from blockfmt.testing.qemu import in_ci
from iotests.runner import FAIL, NOT_RUN, discover, make_backend, run_scenario

SCENARIOS = discover()
CASES = [
    pytest.param(scenario, imgfmt, backend, id=f"{scenario.name}-{imgfmt}-{backend}")
    for scenario in SCENARIOS.values()
    for imgfmt in scenario.formats
    for backend in ("qemu", "blockfmt")
]


@pytest.mark.qemu
@pytest.mark.parametrize(("scenario", "imgfmt", "backend"), CASES)
def test_scenario(scenario, imgfmt, backend, tmp_path, qemu_img, qemu_io, qemu_storage_daemon):
    """The filtered transcript equals the stored expected output (qemu 7.2's own)."""
    result = run_scenario(scenario, imgfmt, make_backend(backend), work_dir=str(tmp_path))
    if result.status == NOT_RUN:
        if in_ci():
            pytest.fail(f"not run under CI=true: {result.reason}")
        pytest.skip(result.reason)
    if result.status == FAIL:
        pytest.fail(f"{result.reason}\n{result.diff or result.output}", pytrace=False)
