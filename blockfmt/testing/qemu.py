"""Finding the real QEMU tools for cross-validation tests.

Outside CI a missing tool skips the test with a reason; with ``CI=true`` it fails, because the
cross-validation is the point of the suite there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["QEMU_TOOLS", "QemuRun", "find_qemu_tool", "in_ci", "run_tool"]

#: environment variables that override each tool's path, as qemu-iotests' testenv.py names them
QEMU_TOOLS = {
    "qemu-img": "QEMU_IMG_PROG",
    "qemu-io": "QEMU_IO_PROG",
    "qemu-storage-daemon": "QSD_PROG",
    "qemu-nbd": "QEMU_NBD_PROG",
}


def in_ci() -> bool:
    """True when running under CI (``CI=true``), where missing tools are failures."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def find_qemu_tool(name: str) -> str | None:
    """Return the path of QEMU tool *name*, honouring its ``*_PROG`` override, or None."""
    override = os.environ.get(QEMU_TOOLS.get(name, ""), "")
    return override or shutil.which(name)


@dataclass(frozen=True)
class QemuRun:
    """Outcome of one tool run."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout then stderr, the way qemu-iotests capture ``2>&1``."""
        return self.stdout + self.stderr


def run_tool(argv: Sequence[str], *, timeout: float = 300, cwd: str | None = None) -> QemuRun:
    """Run *argv* with stdin closed and the C locale; return its exit code and output."""
    env = dict(os.environ, LC_ALL="C", LANG="C")
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    return QemuRun(proc.returncode, proc.stdout, proc.stderr)
