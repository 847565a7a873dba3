"""Helpers for the locking tests: a stand-in metadata format and a reader of ``/proc/locks``.

Locking does not depend on how a format parses its file, only on whether the format has metadata
(:attr:`blockfmt.FormatSpec.data_only`). The stand-in registers the name ``vdi`` with a
pass-through driver, so qemu-img-made VDI files can be held by qemu and by blockfmt while the
real plugin is developed elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blockfmt.driver import FormatSpec
from blockfmt.fileio import ImageFile
from blockfmt.host import Host, get_plugin_manager
from blockfmt.markers import hookimpl
from blockfmt.raw import RawDriver

STAND_IN_FORMAT = "vdi"
#: how long a started qemu process may take to show its locks
QEMU_READY_SECONDS = 10.0


class StandInMetadataFormat:
    """A format with metadata (for locking purposes) whose driver passes bytes straight through."""

    @hookimpl
    def blockfmt_formats(self) -> list[FormatSpec]:
        return [FormatSpec(STAND_IN_FORMAT, "stand-in metadata format for locking tests", ())]

    @hookimpl
    def blockfmt_open(self, format: str, file: ImageFile, read_only: bool, options: dict[str, Any]):
        return RawDriver(file, read_only=read_only) if format == STAND_IN_FORMAT else None

    @hookimpl
    def blockfmt_create(self, format: str, file: ImageFile, size: int) -> bool | None:
        if format != STAND_IN_FORMAT:
            return None
        file.truncate(size)
        return True


@pytest.fixture
def host() -> Host:
    """A host with the built-in raw format and the stand-in ``vdi``, without entry points."""
    import blockfmt.raw

    return Host(get_plugin_manager([blockfmt.raw, StandInMetadataFormat()], autoload=False, builtins=False))


def lock_bytes(path: Path) -> list[tuple[str, int, int]]:
    """Every lock on *path* as (kind, first byte, last byte), sorted; from ``/proc/locks``."""
    st = os.stat(path)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    found = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields[1]:  # a blocked waiter, not a held lock
            continue
        if fields[5] == ident:
            found.append((fields[1], int(fields[6]), int(fields[7])))
    return sorted(found)


def wait_for_locks(path: Path, proc: subprocess.Popen[Any]) -> list[tuple[str, int, int]]:
    """Wait until *proc* shows locks on *path*; fail with its output if it exits first."""
    deadline = time.monotonic() + QEMU_READY_SECONDS
    while time.monotonic() < deadline:
        held = lock_bytes(path)
        if held:
            return held
        if proc.poll() is not None:
            output = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"{proc.args} exited with {proc.returncode}: {output}")
        time.sleep(0.02)
    pytest.fail(f"{proc.args} took no lock on {path} within {QEMU_READY_SECONDS} s")


def stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate a process this test started, and reap it."""
    if proc.stdin:
        proc.stdin.close()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


@pytest.fixture
def start_holder() -> Iterator[Any]:
    """Start a qemu process that holds an image open; every process started is stopped at teardown.

    ``start_holder(argv, path)`` returns the locks it holds once it holds them.
    """
    procs: list[subprocess.Popen[Any]] = []

    def start(argv: list[str], path: Path) -> list[tuple[str, int, int]]:
        env = dict(os.environ, LC_ALL="C", LANG="C")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,  # an interactive qemu-io keeps running while stdin is open
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(proc)
        return wait_for_locks(path, proc)

    yield start
    for proc in procs:
        stop(proc)
