"""The two implementations a scenario runs against: the real QEMU tools, and blockfmt.

A backend offers what a qemu-iotests script uses: ``qemu-img``, ``qemu-io`` and a QMP endpoint
with ``blockdev-add``/``blockdev-create``/``job-dismiss``. The qemu backend runs the binaries and a
:class:`~iotests.qsd.StorageDaemon`; the blockfmt backend runs the ``blockfmt-img``/``blockfmt-io``
console scripts and answers the same QMP commands in-process through
:func:`blockfmt.blockdev.blockdev_create`.

QMP transcript choice: iotests log each command, its response and, for a failed job,
``Job failed: <message>``; the ``JOB_STATUS_CHANGE`` events are consumed but never logged. The
blockfmt backend has no jobs, so it runs the creation synchronously and reports the same response
(``{"return": {}}``) and error text; the events exist on the qemu backend only and are not part of
the compared output.
"""

from __future__ import annotations

import abc
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from blockfmt.testing.qemu import QemuRun, find_qemu_tool, run_tool

from .qsd import StorageDaemon

__all__ = [
    "BACKENDS",
    "Backend",
    "BlockfmtBackend",
    "BlockfmtStorage",
    "QemuBackend",
    "Storage",
    "blockfmt_script",
]

#: seconds one tool invocation may take
TOOL_TIMEOUT = 600


class Storage(abc.ABC):
    """A running QMP endpoint (iotests' ``VM`` between ``launch`` and ``shutdown``)."""

    @abc.abstractmethod
    def qmp(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        """Execute *cmd*; return ``{"return": ...}`` or ``{"error": {"class": ..., "desc": ...}}``."""

    @abc.abstractmethod
    def run_job(self, job_id: str, start: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Send *start*, wait for job *job_id* to conclude; return the response and the job's error."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Shut down; always safe to call."""


class Backend(abc.ABC):
    """One implementation of the tools a scenario drives."""

    name: str

    @abc.abstractmethod
    def unavailable(self, imgfmt: str) -> str | None:
        """Why this backend cannot run *imgfmt* scenarios here, or None when it can."""

    @abc.abstractmethod
    def qemu_img(self, args: Sequence[str]) -> QemuRun:
        """Run the ``qemu-img`` equivalent."""

    @abc.abstractmethod
    def qemu_io(self, args: Sequence[str]) -> QemuRun:
        """Run the ``qemu-io`` equivalent."""

    @abc.abstractmethod
    def start_storage(self, blockdevs: Sequence[str]) -> Storage:
        """Start the QMP endpoint with ``--blockdev`` style node definitions."""


# -- qemu ----------------------------------------------------------------------


class _DaemonStorage(Storage):
    def __init__(self, daemon: StorageDaemon) -> None:
        self.daemon = daemon

    def qmp(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        return self.daemon.qmp(cmd, args)

    def run_job(self, job_id: str, start: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        return self.daemon.run_job(job_id, start)

    def stop(self) -> None:
        self.daemon.stop()


class QemuBackend(Backend):
    """The real qemu-img, qemu-io and qemu-storage-daemon (``*_PROG`` overrides honoured)."""

    name = "qemu"
    TOOLS = ("qemu-img", "qemu-io", "qemu-storage-daemon")

    def unavailable(self, imgfmt: str) -> str | None:
        missing = [tool for tool in self.TOOLS if find_qemu_tool(tool) is None]
        return f"{', '.join(missing)} not found" if missing else None

    def _tool(self, name: str) -> str:
        path = find_qemu_tool(name)
        if path is None:
            raise FileNotFoundError(name)
        return path

    def qemu_img(self, args: Sequence[str]) -> QemuRun:
        return run_tool([self._tool("qemu-img"), *args], timeout=TOOL_TIMEOUT)

    def qemu_io(self, args: Sequence[str]) -> QemuRun:
        return run_tool([self._tool("qemu-io"), *args], timeout=TOOL_TIMEOUT)

    def start_storage(self, blockdevs: Sequence[str]) -> Storage:
        daemon = StorageDaemon(self._tool("qemu-storage-daemon"), blockdevs)
        daemon.start()
        return _DaemonStorage(daemon)


# -- blockfmt ------------------------------------------------------------------


def _parse_blockdev_arg(text: str) -> dict[str, str]:
    """``driver=file,filename=X,node-name=Y`` -> dict (the ``--blockdev`` dotted-key syntax, flat)."""
    return dict(item.partition("=")[::2] for item in text.split(","))


class BlockfmtStorage(Storage):
    """QMP's block commands answered in-process by :mod:`blockfmt.blockdev`; no daemon, no jobs.

    ``blockdev-add`` of a ``file`` node records its file name, ``blockdev-create`` creates at once
    and remembers the outcome under its job id until ``job-dismiss``.
    """

    def __init__(self, blockdevs: Sequence[str]) -> None:
        self.nodes: dict[str, str] = {}
        self.jobs: dict[str, str | None] = {}
        for text in blockdevs:
            self._add_node(_parse_blockdev_arg(text))

    def _add_node(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("driver") != "file" or "filename" not in args or "node-name" not in args:
            return {
                "error": {"class": "GenericError", "desc": "only file nodes with a node-name are supported"}
            }
        self.nodes[args["node-name"]] = args["filename"]
        return {"return": {}}

    def qmp(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        if cmd == "blockdev-add":
            return self._add_node(args)
        if cmd == "job-dismiss":
            if self.jobs.pop(args.get("id", ""), "absent") == "absent":
                return {"error": {"class": "GenericError", "desc": f"Job not found: {args.get('id')}"}}
            return {"return": {}}
        return {"error": {"class": "CommandNotFound", "desc": f"The command {cmd} has not been found"}}

    def run_job(self, job_id: str, start: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        from blockfmt.blockdev import blockdev_create
        from blockfmt.errors import BlockFormatError

        if start["execute"] != "blockdev-create":
            return self.qmp(start["execute"], start["arguments"]), None
        error: str | None = None
        try:
            blockdev_create(start["arguments"]["options"], nodes=self.nodes)
        except BlockFormatError as err:
            error = str(err)
        self.jobs[job_id] = error
        return {"return": {}}, error

    def stop(self) -> None:
        self.nodes.clear()
        self.jobs.clear()


def blockfmt_script(name: str) -> str | None:
    """The path of console script *name*, from the running interpreter's environment first, then ``$PATH``."""
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return shutil.which(name, path=search)


class BlockfmtBackend(Backend):
    """blockfmt's console scripts, from the running interpreter's environment first."""

    name = "blockfmt"
    SCRIPTS = {"qemu-img": "blockfmt-img", "qemu-io": "blockfmt-io"}

    def _script(self, name: str) -> str | None:
        return blockfmt_script(self.SCRIPTS[name])

    def unavailable(self, imgfmt: str) -> str | None:
        from blockfmt.host import default_host

        missing = [script for name, script in self.SCRIPTS.items() if self._script(name) is None]
        if missing:
            return f"{', '.join(missing)} not installed (pip install -e .)"
        if imgfmt not in default_host().formats:
            return f"format '{imgfmt}' is not provided by any installed blockfmt plugin"
        return None

    def _run(self, name: str, args: Sequence[str]) -> QemuRun:
        script = self._script(name)
        if script is None:
            raise FileNotFoundError(self.SCRIPTS[name])
        return run_tool([script, *args], timeout=TOOL_TIMEOUT)

    def qemu_img(self, args: Sequence[str]) -> QemuRun:
        return self._run("qemu-img", args)

    def qemu_io(self, args: Sequence[str]) -> QemuRun:
        return self._run("qemu-io", args)

    def start_storage(self, blockdevs: Sequence[str]) -> Storage:
        return BlockfmtStorage(blockdevs)


BACKENDS: dict[str, type[Backend]] = {"qemu": QemuBackend, "blockfmt": BlockfmtBackend}
