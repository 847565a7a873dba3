"""The pytest11 plugin's fixtures, as a plugin author's test suite uses them."""

from __future__ import annotations

import pytest

import blockfmt

pytest_plugins = ["pytester"]

USES_QEMU_TOOLS = """
import pytest


@pytest.mark.qemu
@pytest.mark.slow
def test_tools(blockfmt_qemu_tools):
    assert blockfmt_qemu_tools.img
"""


def test_host_has_the_entry_point_formats(blockfmt_host):
    assert {"raw", "vhdx", "vdi"} <= set(blockfmt_host.formats)


@pytest.mark.parametrize("fmt", ["raw", "vhdx", "vdi"])
def test_scratch_image_of_any_format(blockfmt_scratch_image, blockfmt_host, fmt):
    path = blockfmt_scratch_image(fmt, 3 << 20)
    assert blockfmt.probe(path, host=blockfmt_host) == fmt
    with blockfmt.open(path, host=blockfmt_host) as img:
        assert img.size == 3 << 20


def test_scratch_images_get_distinct_names(blockfmt_scratch_image):
    assert blockfmt_scratch_image() != blockfmt_scratch_image()


@pytest.fixture
def no_qemu(monkeypatch):
    monkeypatch.setenv("PATH", "")
    for var in ("QEMU_IMG_PROG", "QEMU_IO_PROG", "QSD_PROG"):
        monkeypatch.delenv(var, raising=False)


def test_missing_qemu_skips_with_reason(pytester, no_qemu, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(USES_QEMU_TOOLS)
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:benchmark", "-rs", "--strict-markers"
    )
    result.assert_outcomes(skipped=1)  # the markers are registered, or --strict-markers would error
    result.stdout.fnmatch_lines(["*qemu-img not found*"])


def test_missing_qemu_fails_under_ci(pytester, no_qemu, monkeypatch):
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(USES_QEMU_TOOLS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:benchmark")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*CI=true but qemu-img not found*"])
