"""The runner's verdicts: pass, fail with a diff, not run with a reason."""

from __future__ import annotations

import textwrap

import pytest

from blockfmt.testing.qemu import QemuRun
from iotests.backends import Backend, BlockfmtStorage
from iotests.runner import FAIL, NOT_RUN, PASS, discover, run_scenario, select, unified_diff


class EchoBackend(Backend):
    """A backend whose qemu-img prints a fixed line, for judging the runner alone."""

    name = "echo"

    def __init__(self, line: str = "hello\n", reason: str | None = None) -> None:
        self.line = line
        self.reason = reason

    def unavailable(self, imgfmt: str) -> str | None:
        return self.reason

    def qemu_img(self, args):
        return QemuRun(0, self.line, "")

    def qemu_io(self, args):
        return QemuRun(0, self.line, "")

    def start_storage(self, blockdevs):
        return BlockfmtStorage(blockdevs)


@pytest.fixture
def scenarios(tmp_path):
    (tmp_path / "demo.py").write_text(
        textwrap.dedent(
            """
            FORMATS = ("raw",)
            GROUPS = ("quick",)

            def run(t):
                t.echo("QA output created by demo")
                t.qemu_img("info", t.test_img)
            """
        )
    )
    (tmp_path / "demo.out").write_text("QA output created by demo\nhello   \n")
    (tmp_path / "boom.py").write_text(
        'FORMATS = ("raw",)\nGROUPS = ()\n\ndef run(t):\n    raise OSError("x")\n'
    )
    return discover(tmp_path)


def test_matching_output_passes_ignoring_trailing_blanks(scenarios, tmp_path):
    result = run_scenario(scenarios["demo"], "raw", EchoBackend(), work_dir=str(tmp_path))
    assert (result.status, result.diff) == (PASS, "")


def test_different_output_fails_with_unified_diff(scenarios, tmp_path):
    result = run_scenario(scenarios["demo"], "raw", EchoBackend("bye\n"), work_dir=str(tmp_path))
    assert result.status == FAIL
    assert "-hello\n+bye\n" in result.diff
    assert result.diff.startswith("--- demo.out\n+++ demo.out.echo\n")


def test_unsupported_format_is_not_run(scenarios):
    result = run_scenario(scenarios["demo"], "vhdx", EchoBackend())
    assert (result.status, result.reason) == (NOT_RUN, "not suitable for this image format: vhdx")


def test_unavailable_backend_is_not_run_with_its_reason(scenarios):
    result = run_scenario(scenarios["demo"], "raw", EchoBackend(reason="qemu-img not found"))
    assert (result.status, result.reason) == (NOT_RUN, "qemu-img not found")


def test_exception_fails_with_traceback(scenarios, tmp_path):
    result = run_scenario(scenarios["boom"], "raw", EchoBackend(), work_dir=str(tmp_path))
    assert result.status == FAIL
    assert "OSError: x" in result.output


def test_scratch_directory_is_removed(scenarios, tmp_path):
    run_scenario(scenarios["demo"], "raw", EchoBackend(), work_dir=str(tmp_path))
    assert not list(tmp_path.glob("iotest-*"))


def test_select_by_name_and_group(scenarios):
    assert [s.name for s in select(scenarios, ["quick"])] == ["demo"]
    assert [s.name for s in select(scenarios, [])] == ["boom", "demo"]
    with pytest.raises(KeyError):
        select(scenarios, ["nope"])


def test_unified_diff_is_empty_for_equal_text():
    assert unified_diff("a\nb\n", "a \nb", "x", "y") == ""


def test_shipped_scenarios_all_have_expected_output():
    for scenario in discover().values():
        for imgfmt in scenario.formats:
            assert scenario.expected_path(imgfmt).exists(), scenario.name
