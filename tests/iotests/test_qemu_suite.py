"""``python -m iotests --qemu-suite``: QEMU's own ``./check`` run with QEMU and with blockfmt.

The unit tests judge the parsing, the table and the exit status on ``check`` output written here;
the ``qemu`` tests run one quick test of the real suite (``../shared/reference/qemu-7.2``) both
ways. The whole suite takes tens of minutes: it is ``tox -e qemu-suite``, not part of this file.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from blockfmt.testing.qemu import in_ci
from iotests import __main__ as cli
from iotests import qemu_suite
from iotests.qemu_suite import (
    FAIL,
    NOT_RUN,
    PASS,
    CheckRun,
    Outcome,
    compare,
    copy_suite,
    format_table,
    parse_check_output,
    regressions,
    run_both,
    shared_suite_dir,
)

#: what ``./check --color off`` prints: a ``...`` line ended by ``\r``, then the verdict, then a diff
CHECK_OUTPUT = (
    "QEMU          -- qemu-system-tcg\n"
    "001                   ...        [21:45:39]              ...                  \r"
    "001                   pass       [21:45:39] [21:45:51]   11.9s                \n"
    "002                   ...        [21:45:51]              ...                  \r"
    "002                   fail       [21:45:51] [21:46:38]   47.1s                "
    "output mismatch (see /tmp/x/002.out.bad)\n"
    "--- /tmp/q/002.out\n"
    "+++ /tmp/x/002.out.bad\n"
    "@@ -1,2 +1,2 @@\n"
    " QA output created by 002\n"
    "-wrote 512/512 bytes at offset 0\n"
    "+qemu-io: unrecognized option '--cache'\n"
    "007                   ...        [21:46:38]              ...                  \r"
    "007                   not run    [21:46:38] [21:46:38]   ...                  "
    "not suitable for this image format: vhdx\n"
    "Not run: 007\n"
    "Failures: 002\n"
)


def _run(**statuses: str) -> CheckRun:
    return CheckRun({name.lstrip("t"): Outcome(status) for name, status in statuses.items()}, 0, 1.0, "")


def test_check_output_gives_each_verdict_reason_and_diff():
    outcomes = parse_check_output(CHECK_OUTPUT)
    assert {name: o.status for name, o in outcomes.items()} == {"001": PASS, "002": FAIL, "007": NOT_RUN}
    assert outcomes["001"].seconds == 11.9
    assert outcomes["002"].description == "output mismatch"
    assert outcomes["002"].detail[-1] == "+qemu-io: unrecognized option '--cache'"
    assert "Not run: 007" not in outcomes["002"].detail
    assert outcomes["007"].description == "not suitable for this image format: vhdx"


def test_regressions_are_tests_qemu_passes_and_blockfmt_does_not():
    qemu = _run(t001=PASS, t002=PASS, t003=FAIL, t004=PASS)
    blockfmt = _run(t001=PASS, t002=FAIL, t003=FAIL, t004=NOT_RUN)
    assert regressions(compare(qemu, blockfmt)) == ["002", "004"]


def test_table_lists_tests_either_ran_and_counts_the_rest():
    rows = compare(_run(t001=PASS, t007=NOT_RUN, t120=FAIL), _run(t001=PASS, t007=NOT_RUN, t120=FAIL))
    table = format_table(rows, "vhdx")
    assert [line.split()[:3] for line in table.splitlines()[2:4]] == [
        ["001", "pass", "pass"],
        ["120", "fail", "fail"],
    ]
    assert "007" not in table
    assert table.splitlines()[-1] == (
        "vhdx: 2 tests run; qemu passes 1, blockfmt passes 1; 1 not run by either"
        " (not suitable for vhdx or this host)"
    )


def test_detail_shows_the_first_diff_lines_of_each_blockfmt_failure():
    outcomes = parse_check_output(CHECK_OUTPUT)
    rows = compare(_run(t002=PASS), CheckRun({"002": outcomes["002"]}, 1, 1.0, ""))
    assert format_table(rows, "vdi", detail=2).splitlines()[3:5] == [
        "    | @@ -1,2 +1,2 @@",
        "    |  QA output created by 002",
    ]


def test_a_format_qemu_lacks_is_not_run_in_the_qemu_column():
    skipped = CheckRun({}, 0, 0.0, "", skipped="QEMU has no myfmt driver")
    (row,) = compare(skipped, _run(t001=PASS))
    assert (row[1].status, row[1].description, row[2].status) == (NOT_RUN, "QEMU has no myfmt driver", PASS)


@pytest.fixture
def fake_suite(tmp_path):
    """The shape ``copy_suite`` needs: ``tests/qemu-iotests/check`` and ``python/`` beside ``tests``."""
    suite = tmp_path / "src" / "tests" / "qemu-iotests"
    suite.mkdir(parents=True)
    (suite / "check").write_text("format_list = ['raw', 'vdi',\n               'vhdx']\n")
    (tmp_path / "src" / "python" / "qemu").mkdir(parents=True)
    return suite


def test_copy_suite_adds_a_format_check_does_not_offer(fake_suite, tmp_path):
    copy = copy_suite(fake_suite, tmp_path / "one", "myfmt")
    assert (copy / "check").read_text().startswith("format_list = ['myfmt', 'raw', 'vdi',")
    assert (tmp_path / "one" / "python" / "qemu").is_dir()
    known = copy_suite(fake_suite, tmp_path / "two", "vhdx")
    assert (known / "check").read_text() == (fake_suite / "check").read_text()


def test_copy_suite_refuses_a_folder_without_check_or_python(fake_suite, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a qemu-iotests directory"):
        copy_suite(fake_suite.parent, tmp_path / "a", "vhdx")
    (fake_suite.parent.parent / "python" / "qemu").rmdir()
    (fake_suite.parent.parent / "python").rmdir()
    with pytest.raises(FileNotFoundError, match="Python tests import it"):
        copy_suite(fake_suite, tmp_path / "b", "vhdx")


@pytest.mark.parametrize(("blockfmt_status", "exit_status"), [(PASS, 0), (FAIL, 1)])
def test_exit_status_is_1_when_blockfmt_fails_what_qemu_passes(
    monkeypatch, capsys, tmp_path, blockfmt_status, exit_status
):
    def fake_run_both(suite_dir, imgfmt, tests, *, keep, jobs, progress):
        assert (imgfmt, tests) == ("vhdx", ["-g", "auto", "064", "070", "213"])
        return _run(t001=PASS), _run(t001=blockfmt_status), tmp_path

    monkeypatch.setattr(qemu_suite, "run_both", fake_run_both)
    assert cli.main(["--qemu-suite", str(tmp_path), "-f", "vhdx"]) == exit_status
    out = capsys.readouterr().out
    assert out.splitlines()[2].split() == ["001", "pass", blockfmt_status]
    assert ("blockfmt fails where QEMU passes: 001" in out) == (exit_status == 1)


def test_a_folder_that_is_not_the_suite_is_a_one_line_error(capsys, tmp_path):
    assert cli.main(["--qemu-suite", str(tmp_path), "-f", "vhdx"]) == 2
    err = capsys.readouterr().err
    assert err == f"python -m iotests: error: {tmp_path} has no ./check: not a qemu-iotests directory\n"


def test_qemu_suite_needs_a_format(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--qemu-suite", "/nonexistent"])
    assert stop.value.code == 2
    assert "--qemu-suite needs -f FORMAT" in capsys.readouterr().err


@pytest.fixture(scope="module")
def real_suite():
    suite = shared_suite_dir()
    if not (suite / "check").exists():
        message = f"QEMU's qemu-iotests not found at {suite} (set QEMU_IOTESTS_DIR)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return suite


@pytest.mark.qemu
def test_real_suite_judges_one_quick_test_with_qemu_and_blockfmt(real_suite, qemu_img, qemu_io):
    """104 (qemu-img info of images with odd sizes) passes with both: the copy, links and env work."""
    qemu, blockfmt, _ = run_both(real_suite, "vhdx", ["104"])
    assert (qemu.outcomes["104"].status, blockfmt.outcomes["104"].status) == (PASS, PASS), blockfmt.output
    assert "/blockfmt/bin/qemu-img" in blockfmt.output
    assert "/blockfmt/bin/" not in qemu.output


@pytest.mark.qemu
def test_real_suite_runs_a_format_qemu_does_not_know(real_suite, qemu_img):
    """The QEMU column is not run; blockfmt's ./check accepts -myfmt and judges the (generic) test."""
    qemu, blockfmt, _ = run_both(real_suite, "myfmt", ["012"])
    (row,) = compare(qemu, blockfmt)
    assert (row[1].status, row[1].description) == (NOT_RUN, "QEMU has no myfmt driver")
    # no plugin provides myfmt here, so blockfmt-img create fails and check reports the test failed
    assert row[2].status == FAIL, blockfmt.output


@pytest.mark.qemu
def test_the_copied_check_lists_the_auto_group(real_suite, tmp_path, qemu_img):
    copy = copy_suite(real_suite, tmp_path, "vdi")
    listed = subprocess.run(
        ["./check", "-n", "-vdi", "-g", "auto", "084"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, **qemu_suite.qemu_tools().environ()),
        check=True,
    ).stdout.split()
    assert {"001", "104", "084"} <= set(listed)


def test_a_run_past_its_deadline_is_killed_with_every_process_it_started(monkeypatch, tmp_path):
    monkeypatch.setattr(qemu_suite, "CHECK_TIMEOUT", 1.0)
    seen = []
    script = "sleep 60 & echo $!; echo '001   pass   [10:00:00] [10:00:01]   1.0s'; wait"
    returncode, output = qemu_suite._run_process_group(
        ["sh", "-c", script], tmp_path, dict(os.environ), seen.append
    )
    child = int(output.split()[0])
    assert returncode == -9
    assert seen == ["001 pass"]
    assert _dies_within(child, seconds=5.0)


def _gone_or_zombie(pid: int) -> bool:
    """True when *pid* no longer runs (a killed orphan may stay a zombie until its new parent reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _dies_within(pid: int, seconds: float) -> bool:
    """SIGKILL is delivered asynchronously: the kill returns before the target has stopped running,
    so a loaded machine can show it alive for a moment. Poll until it is gone or a zombie."""
    deadline = time.monotonic() + seconds
    while not _gone_or_zombie(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
