"""Run QEMU's own qemu-iotests ``./check`` twice: with blockfmt as qemu-img/qemu-io, and with QEMU.

The suite writes beside its scripts (``check`` keeps per-test timings there, Python tests import
``../../python``), so it runs in a scratch copy: ``<scratch>/tests/qemu-iotests`` and
``<scratch>/python``. blockfmt takes the place of the two tools through a bin directory of symlinks
called ``qemu-img`` and ``qemu-io`` that point at the ``blockfmt-img`` / ``blockfmt-io`` console
scripts, because the suite and the tools themselves print ``basename(argv[0])``. qemu-nbd,
qemu-storage-daemon and qemu-system are QEMU's in both runs (the suite needs a qemu-system with the
qtest accelerator: ``$QEMU_PROG`` or ``../shared/tools/qemu-system-tcg``).

A format QEMU does not know (a third-party plugin) is added to the copy's ``check`` format list
for the blockfmt run; the QEMU run is then ``not run`` for every test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .backends import blockfmt_script
from .env import REPO

__all__ = [
    "EXTRA_TESTS",
    "CheckRun",
    "Outcome",
    "SuiteTools",
    "blockfmt_tools",
    "compare",
    "copy_suite",
    "default_tests",
    "format_table",
    "parse_check_output",
    "qemu_formats",
    "qemu_tools",
    "regressions",
    "run_check",
    "shared_suite_dir",
]

PASS, FAIL, NOT_RUN = "pass", "fail", "not run"

#: tests outside ``-g auto`` that exercise a format by name (issue 15's lists); other formats run ``auto``
EXTRA_TESTS: Mapping[str, tuple[str, ...]] = {"vhdx": ("064", "070", "213"), "vdi": ("084", "211")}

#: seconds one whole ``./check`` run may take before it is killed
CHECK_TIMEOUT = 3 * 3600

#: ``check``'s result line (``--color off``, one job): name, status, start and end times, then
#: the elapsed time (empty for ``not run``) and a description (failure kind or skip reason)
_RESULT_LINE = re.compile(
    r"^(?P<test>\S+)\s+(?P<status>pass|fail|not run)\s+\[\d\d:\d\d:\d\d\] \[\d\d:\d\d:\d\d\]"
    r"\s+(?:(?P<seconds>\d+(?:\.\d+)?)s|\.\.\.)?\s*(?P<description>.*?)\s*$"
)
_FORMAT_LIST = re.compile(r"format_list = \[")
#: how the lines of the unified diff ``check`` prints after a failure start (its summary lines do not)
_DIFF_LINE_STARTS = ("+", "-", "@", " ", "\\")
#: the diff's first two lines name scratch files that are gone after the run
_DIFF_FILE_HEADERS = ("--- ", "+++ ")
#: the ``(see <scratch>/NNN.out.bad)`` tail of a failure's description: a path in a deleted scratch dir
_SEE_FILE = re.compile(r"\s*\(see [^)]*\)")


@dataclass(frozen=True)
class SuiteTools:
    """The programs one ``./check`` run uses, as qemu-iotests' ``*_PROG`` variables name them."""

    qemu_img: str
    qemu_io: str
    qemu_nbd: str
    qsd: str
    qemu_system: str

    def environ(self) -> dict[str, str]:
        """The variables ``check`` reads."""
        return {
            "QEMU_IMG_PROG": self.qemu_img,
            "QEMU_IO_PROG": self.qemu_io,
            "QEMU_NBD_PROG": self.qemu_nbd,
            "QSD_PROG": self.qsd,
            "QEMU_PROG": self.qemu_system,
        }


@dataclass
class Outcome:
    """One test's verdict in one run: status, ``check``'s description and the diff it printed."""

    status: str
    description: str = ""
    detail: list[str] = field(default_factory=list)
    seconds: float | None = None


#: one line of the comparison: test name, QEMU's outcome, blockfmt's outcome
Row = tuple[str, Outcome, Outcome]


@dataclass
class CheckRun:
    """One ``./check`` run: its verdicts by test name, exit code, wall time and full output."""

    outcomes: dict[str, Outcome]
    returncode: int
    seconds: float
    output: str
    #: why the whole run did not happen (the format is unknown to this implementation), else ""
    skipped: str = ""


def shared_suite_dir() -> Path:
    """QEMU 7.2's qemu-iotests: ``$QEMU_IOTESTS_DIR`` or the copy in ``../shared/reference``."""
    default = REPO.parent / "shared" / "reference" / "qemu-7.2" / "tests" / "qemu-iotests"
    return Path(os.environ.get("QEMU_IOTESTS_DIR") or default)


def _required(name: str, variable: str) -> str:
    path = os.environ.get(variable) or shutil.which(name)
    if not path:
        raise FileNotFoundError(f"{name} not found (install QEMU 7.2 or set {variable})")
    return path


def _qemu_system() -> str:
    path = os.environ.get("QEMU_PROG")
    if path:
        return path
    tcg = REPO.parent / "shared" / "tools" / "qemu-system-tcg"
    if tcg.exists():
        return str(tcg)
    return _required("qemu-system-x86_64", "QEMU_PROG")


def qemu_tools() -> SuiteTools:
    """QEMU's own tools (``*_PROG`` variables honoured)."""
    return SuiteTools(
        qemu_img=_required("qemu-img", "QEMU_IMG_PROG"),
        qemu_io=_required("qemu-io", "QEMU_IO_PROG"),
        qemu_nbd=_required("qemu-nbd", "QEMU_NBD_PROG"),
        qsd=_required("qemu-storage-daemon", "QSD_PROG"),
        qemu_system=_qemu_system(),
    )


def blockfmt_tools(bin_dir: Path) -> SuiteTools:
    """QEMU's tools with blockfmt's two CLIs linked into *bin_dir* as ``qemu-img`` and ``qemu-io``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for qemu_name, blockfmt_name in (("qemu-img", "blockfmt-img"), ("qemu-io", "blockfmt-io")):
        link = bin_dir / qemu_name
        link.unlink(missing_ok=True)
        script = blockfmt_script(blockfmt_name)
        if script is None:
            raise FileNotFoundError(f"{blockfmt_name} not found: install blockfmt (pip install -e .)")
        link.symlink_to(script)
    qemu = qemu_tools()
    return SuiteTools(
        qemu_img=str(bin_dir / "qemu-img"),
        qemu_io=str(bin_dir / "qemu-io"),
        qemu_nbd=qemu.qemu_nbd,
        qsd=qemu.qsd,
        qemu_system=qemu.qemu_system,
    )


def qemu_formats(qemu_img: str) -> set[str]:
    """The formats QEMU's qemu-img supports (its ``--help`` line ``Supported formats:``)."""
    proc = subprocess.run([qemu_img, "--help"], capture_output=True, text=True, timeout=60, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("Supported formats:"):
            return set(line.split(":", 1)[1].split())
    return set()


def copy_suite(suite_dir: Path, scratch: Path, imgfmt: str) -> Path:
    """Copy *suite_dir* and its ``../../python`` into *scratch*; return the copy's qemu-iotests.

    When ``check`` does not offer ``-<imgfmt>``, the copy's format list gets *imgfmt*.

    :raises FileNotFoundError: when *suite_dir* has no ``check`` or no ``python/`` two levels up.
    """
    suite_dir = suite_dir.resolve()
    python_dir = suite_dir.parent.parent / "python"
    if not (suite_dir / "check").is_file():
        raise FileNotFoundError(f"{suite_dir} has no ./check: not a qemu-iotests directory")
    if not python_dir.is_dir():
        raise FileNotFoundError(f"{python_dir} is missing: the suite's Python tests import it")
    copy = scratch / "tests" / "qemu-iotests"
    shutil.copytree(suite_dir, copy, symlinks=True)
    shutil.copytree(python_dir, scratch / "python", symlinks=True)
    check = copy / "check"
    text = check.read_text()
    if f"'{imgfmt}'" not in text.split("format_list", 1)[-1].split("]", 1)[0]:
        check.write_text(_FORMAT_LIST.sub(f"format_list = ['{imgfmt}', ", text, count=1))
    return copy


def default_tests(imgfmt: str) -> list[str]:
    """``check``'s arguments for the default list: the ``auto`` group plus the format's extra tests."""
    return ["-g", "auto", *EXTRA_TESTS.get(imgfmt, ())]


def parse_check_output(text: str) -> dict[str, Outcome]:
    """Each test's verdict from ``check``'s (non-TAP, uncoloured) output, with the diff after a failure."""
    outcomes: dict[str, Outcome] = {}
    current: Outcome | None = None
    for line in re.split(r"[\r\n]", text):
        match = _RESULT_LINE.match(line)
        if match:
            seconds = match["seconds"]
            description = _SEE_FILE.sub("", match["description"])
            current = Outcome(match["status"], description, [], float(seconds) if seconds else None)
            outcomes[match["test"]] = current
        elif current is not None and current.status == FAIL and line[:1] in _DIFF_LINE_STARTS:
            current.detail.append(line)
    return outcomes


def run_check(
    suite_copy: Path,
    imgfmt: str,
    tools: SuiteTools,
    tests: Sequence[str],
    work: Path,
    *,
    jobs: int = 1,
    progress: Callable[[str], None] | None = None,
) -> CheckRun:
    """Run ``./check -<imgfmt> tests`` in *suite_copy* with *tools*; scratch and sockets under *work*.

    :param progress: called with ``"<test> <status>"`` as each verdict arrives.
    """
    test_dir, sock_dir = work / "scratch", work / "sock"
    test_dir.mkdir(parents=True, exist_ok=True)
    sock_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **tools.environ(), TEST_DIR=str(test_dir), SOCK_DIR=str(sock_dir))
    env.pop("IMGOPTS", None)
    argv = ["./check", "--color", "off", f"-{imgfmt}", *(["-j", str(jobs)] if jobs > 1 else []), *tests]
    started = time.monotonic()
    returncode, output = _run_process_group(argv, suite_copy, env, progress)
    return CheckRun(parse_check_output(output), returncode, time.monotonic() - started, output)


def _run_process_group(
    argv: Sequence[str], cwd: Path, env: dict[str, str], progress: Callable[[str], None] | None
) -> tuple[int, str]:
    """Run *argv* in its own process group and return its exit code and output.

    ``check`` starts qemu, qemu-nbd and qemu-storage-daemon processes of its own: on a timeout or
    Ctrl-C the whole group is killed, so none of them outlives the run. Each verdict line goes to
    *progress* as it arrives.
    """
    lines: list[str] = []
    with subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    ) as proc:
        deadline = threading.Timer(CHECK_TIMEOUT, _kill_group, (proc,))
        deadline.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if progress is not None:
                    for match in filter(None, map(_RESULT_LINE.match, line.split("\r"))):
                        progress(f"{match['test']} {match['status']}")
            returncode = proc.wait()
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            deadline.cancel()
    return returncode, "".join(lines)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def compare(qemu: CheckRun, blockfmt: CheckRun) -> list[Row]:
    """Rows (test, qemu outcome, blockfmt outcome) for every test either run judged, in check's order."""
    names = list(dict.fromkeys([*blockfmt.outcomes, *qemu.outcomes]))
    missing = Outcome(NOT_RUN, "not in this run")
    return [
        (name, qemu.outcomes.get(name, _skipped(qemu, missing)), blockfmt.outcomes.get(name, missing))
        for name in names
    ]


def _skipped(run: CheckRun, fallback: Outcome) -> Outcome:
    return Outcome(NOT_RUN, run.skipped) if run.skipped else fallback


def regressions(rows: Iterable[Row]) -> list[str]:
    """Tests QEMU passes and blockfmt does not."""
    return [name for name, qemu, blockfmt in rows if qemu.status == PASS and blockfmt.status != PASS]


def format_table(rows: Sequence[Row], imgfmt: str, *, show_all: bool = False, detail: int = 0) -> str:
    """The per-test table; rows where neither run ran the test are counted, not listed, unless *show_all*.

    :param detail: lines of each blockfmt failure's diff (without its file names) to print under its row.
    """
    lines = [f"{'test':<28} {'qemu':<8} {'blockfmt':<8} note", "-" * 72]
    neither = [name for name, qemu, blockfmt in rows if qemu.status == blockfmt.status == NOT_RUN]
    for name, qemu, blockfmt in rows:
        if name in neither and not show_all:
            continue
        note = blockfmt.description if blockfmt.status != PASS else ""
        if not note and qemu.status != PASS:
            note = f"qemu: {qemu.description}"
        lines.append(f"{name:<28} {qemu.status:<8} {blockfmt.status:<8} {note}".rstrip())
        if detail and blockfmt.status == FAIL:
            hunks = [text for text in blockfmt.detail if not text.startswith(_DIFF_FILE_HEADERS)]
            lines.extend(f"    | {text}" for text in hunks[:detail])
    qemu_passed = sum(1 for _, qemu, _ in rows if qemu.status == PASS)
    blockfmt_passed = sum(1 for _, _, blockfmt in rows if blockfmt.status == PASS)
    summary = f"{imgfmt}: {len(rows) - len(neither)} tests run; qemu passes {qemu_passed}, "
    summary += f"blockfmt passes {blockfmt_passed}"
    if neither:
        summary += f"; {len(neither)} not run by either (not suitable for {imgfmt} or this host)"
    lines += ["-" * 72, summary]
    return "\n".join(lines)


def run_both(
    suite_dir: Path,
    imgfmt: str,
    tests: Sequence[str],
    *,
    keep: bool = False,
    jobs: int = 1,
    progress: Callable[[str], None] | None = None,
) -> tuple[CheckRun, CheckRun, Path]:
    """Copy the suite and run it with QEMU, then with blockfmt; return both runs and the scratch root."""
    scratch = Path(tempfile.mkdtemp(prefix=f"qemu-suite-{imgfmt}-"))
    try:
        runs: dict[str, CheckRun] = {}
        real = qemu_tools()
        for who in ("qemu", "blockfmt"):
            copy = copy_suite(suite_dir, scratch / who, imgfmt)
            if who == "qemu" and imgfmt not in qemu_formats(real.qemu_img):
                runs[who] = CheckRun({}, 0, 0.0, "", skipped=f"QEMU has no {imgfmt} driver")
                continue
            tools = real if who == "qemu" else blockfmt_tools(scratch / who / "bin")
            report = _tagged(progress, f"{imgfmt} {who}")
            work = scratch / who / "work"
            runs[who] = run_check(copy, imgfmt, tools, tests, work, jobs=jobs, progress=report)
        return runs["qemu"], runs["blockfmt"], scratch
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def _tagged(progress: Callable[[str], None] | None, tag: str) -> Callable[[str], None] | None:
    """*progress* with every message prefixed by *tag* (None stays None)."""
    if progress is None:
        return None
    return lambda text: progress(f"{tag}: {text}")
