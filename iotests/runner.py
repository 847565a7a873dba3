"""Find scenarios, run them per format and backend, and judge them (``testrunner.py``'s job).

Every run ends in exactly one of ``pass``, ``fail`` or ``not run`` (with the reason). A run passes
when its filtered output equals the stored expected output (``<name>.out.<fmt>`` if present, else
``<name>.out``), trailing white space ignored as qemu-iotests ignore it; otherwise the result
carries a unified diff.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .backends import BACKENDS, Backend
from .context import NotRun, TestContext
from .env import SCENARIO_DIR, TestEnv

__all__ = [
    "FAIL",
    "NOT_RUN",
    "PASS",
    "RECORDED",
    "Result",
    "Scenario",
    "discover",
    "record_scenario",
    "regenerate",
    "run_scenario",
    "select",
    "unified_diff",
]

PASS, FAIL, NOT_RUN = "pass", "fail", "not run"
#: a transcript taken but not judged (:func:`record_scenario`)
RECORDED = "recorded"


@dataclass(frozen=True)
class Scenario:
    """One scenario script.

    :ivar formats: the formats it supports (``_supported_fmt``).
    :ivar groups: its groups (``# group:`` line), always including ``auto``.
    """

    name: str
    path: Path
    formats: tuple[str, ...]
    groups: tuple[str, ...]
    run: Callable[[TestContext], None]

    def expected_path(self, imgfmt: str) -> Path:
        specific = self.path.with_name(f"{self.name}.out.{imgfmt}")
        return specific if specific.exists() else self.path.with_name(f"{self.name}.out")


@dataclass
class Result:
    """The verdict of one scenario on one format and backend."""

    scenario: str
    imgfmt: str
    backend: str
    status: str
    reason: str = ""
    output: str = ""
    diff: str = ""
    seconds: float = 0.0


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"iotests.scenarios.s_{path.stem.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def discover(directory: Path = SCENARIO_DIR) -> dict[str, Scenario]:
    """Every ``*.py`` scenario in *directory*, by name."""
    found: dict[str, Scenario] = {}
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = _load(path)
        groups = tuple(dict.fromkeys(("auto", *module.GROUPS)))
        found[path.stem] = Scenario(path.stem, path, tuple(module.FORMATS), groups, module.run)
    return found


def select(scenarios: dict[str, Scenario], names: Iterable[str]) -> list[Scenario]:
    """Scenarios named, or in the groups named, in *names* (all of them when *names* is empty).

    :raises KeyError: for a name that is neither a scenario nor a group.
    """
    names = list(names) or ["auto"]
    chosen: dict[str, Scenario] = {}
    for name in names:
        if name in scenarios:
            chosen[name] = scenarios[name]
            continue
        members = [s for s in scenarios.values() if name in s.groups]
        if not members:
            raise KeyError(name)
        chosen.update((s.name, s) for s in members)
    return sorted(chosen.values(), key=lambda s: s.name)


def unified_diff(expected: str, actual: str, fromfile: str, tofile: str) -> str:
    """A unified diff of two transcripts, trailing white space ignored; empty when they agree."""
    left = [line.rstrip() + "\n" for line in expected.rstrip("\n").split("\n")]
    right = [line.rstrip() + "\n" for line in actual.rstrip("\n").split("\n")]
    return "".join(difflib.unified_diff(left, right, fromfile, tofile))


def record_scenario(
    scenario: Scenario, imgfmt: str, backend: Backend, *, work_dir: str | None = None, keep: bool = False
) -> Result:
    """Run *scenario* for *imgfmt* on *backend* in a fresh scratch directory; do not judge it.

    :returns: ``not run`` (with the reason), ``fail`` when the scenario raised, else ``recorded``
        with the filtered transcript in ``output``.
    """
    result = Result(scenario.name, imgfmt, backend.name, NOT_RUN)
    if imgfmt not in scenario.formats:
        result.reason = f"not suitable for this image format: {imgfmt}"
        return result
    reason = backend.unavailable(imgfmt)
    if reason:
        result.reason = reason
        return result
    test_dir = tempfile.mkdtemp(prefix=f"iotest-{scenario.name}-{backend.name}-", dir=work_dir)
    context = TestContext(TestEnv(imgfmt, test_dir, os.getpid()), backend)
    started = time.monotonic()
    try:
        scenario.run(context)
    except NotRun as err:
        result.reason = str(err)
        return result
    except Exception:
        result.status = FAIL
        result.reason = "scenario raised an exception"
        result.output = context.output + traceback.format_exc()
        return result
    finally:
        result.seconds = time.monotonic() - started
        if not keep:
            shutil.rmtree(test_dir, ignore_errors=True)
    result.status = RECORDED
    result.output = context.output
    return result


def run_scenario(
    scenario: Scenario, imgfmt: str, backend: Backend, *, work_dir: str | None = None, keep: bool = False
) -> Result:
    """Run *scenario* for *imgfmt* on *backend* in a fresh scratch directory and judge it."""
    result = record_scenario(scenario, imgfmt, backend, work_dir=work_dir, keep=keep)
    if result.status != RECORDED:
        return result
    expected_path = scenario.expected_path(imgfmt)
    if not expected_path.exists():
        result.status = FAIL
        result.reason = f"no expected output {expected_path.name} (python -m iotests --regen writes it)"
        return result
    result.diff = unified_diff(
        expected_path.read_text(), result.output, expected_path.name, f"{scenario.name}.out.{backend.name}"
    )
    result.status = FAIL if result.diff else PASS
    if result.diff:
        result.reason = f"output differs from {expected_path.name}"
    return result


def regenerate(scenario: Scenario, transcripts: dict[str, str]) -> list[Path]:
    """Write *scenario*'s expected output from real QEMU's *transcripts* (by format); return the files.

    One ``<name>.out`` when every format printed the same, else ``<name>.out.<fmt>`` per format
    (which :meth:`Scenario.expected_path` prefers).
    """
    if len(set(transcripts.values())) == 1:
        target = scenario.path.with_name(f"{scenario.name}.out")
        target.write_text(next(iter(transcripts.values())))
        return [target]
    written = []
    for imgfmt, text in transcripts.items():
        target = scenario.path.with_name(f"{scenario.name}.out.{imgfmt}")
        target.write_text(text)
        written.append(target)
    return written


def make_backend(name: str) -> Backend:
    """The backend called *name* (``qemu`` or ``blockfmt``)."""
    return BACKENDS[name]()
