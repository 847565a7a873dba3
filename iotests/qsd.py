"""A qemu-storage-daemon driven over QMP: the qemu backend's stand-in for iotests' ``VM``.

The daemon listens on a UNIX socket in a private temporary directory; :class:`StorageDaemon`
connects with :class:`qemu.qmp.QMPClient` (asyncio, run on a private event loop so callers stay
synchronous) and always shuts the daemon down: ``quit`` first, ``SIGKILL`` if it lingers, even
when the scenario failed half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from qemu.qmp import ConnectError, EventListener, ExecuteError, QMPClient

__all__ = ["QsdError", "StorageDaemon"]

#: seconds allowed for the daemon to accept QMP, answer a command, or exit after ``quit``
DEFAULT_TIMEOUT = 30.0
#: seconds a job may run (211's largest VDI writes a 2 GiB block map)
JOB_TIMEOUT = 600.0
_POLL_INTERVAL = 0.02
#: job states after which a blockdev-create job has nothing left to do but be dismissed
_JOB_CONCLUDED = "concluded"


def _error_response(err: ExecuteError) -> dict[str, Any]:
    """The ``{"error": ...}`` message QMP sent (qmp-spec, section 2.4.2)."""
    return {"error": {"class": err.error_class, "desc": str(err)}}


class QsdError(Exception):
    """The daemon could not be started, answered nothing, or a job never finished."""


class StorageDaemon:
    """One qemu-storage-daemon process with a QMP monitor.

    :param binary: path of ``qemu-storage-daemon``.
    :param blockdevs: ``--blockdev`` arguments given at start-up (iotests' ``VM.add_blockdev``).
    :param timeout: seconds for start-up, each command, and shut-down.
    :param job_timeout: seconds for each job.
    """

    def __init__(
        self,
        binary: str,
        blockdevs: Sequence[str] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        job_timeout: float = JOB_TIMEOUT,
    ):
        self.binary = binary
        self.blockdevs = list(blockdevs)
        self.timeout = timeout
        self.job_timeout = job_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: QMPClient | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock_dir: tempfile.TemporaryDirectory[str] | None = None

    # -- life cycle ------------------------------------------------------------

    def start(self) -> None:
        """Start the daemon and connect to its monitor.

        :raises QsdError: when the socket does not appear or the QMP handshake fails in time.
        """
        self._sock_dir = tempfile.TemporaryDirectory(prefix="blockfmt-qsd-")
        sock = os.path.join(self._sock_dir.name, "qmp.sock")
        argv = [
            self.binary,
            "--chardev",
            f"socket,id=qmp0,path={sock},server=on,wait=off",
            "--monitor",
            "chardev=qmp0",
        ]
        for blockdev in self.blockdevs:
            argv += ["--blockdev", blockdev]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._loop = asyncio.new_event_loop()
        try:
            self._client = self._connect(sock)
        except BaseException:
            self.stop()
            raise

    def _connect(self, sock: str) -> QMPClient:
        """Connect once the daemon listens; it may bind the socket a moment before it accepts."""
        assert self._proc is not None
        deadline = time.monotonic() + self.timeout
        while True:
            if self._proc.poll() is not None:
                stderr = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise QsdError(f"qemu-storage-daemon exited with {self._proc.returncode}: {stderr.strip()}")
            if os.path.exists(sock):
                client = QMPClient("blockfmt-iotests")
                try:
                    self._run(client.connect(sock))
                    return client
                except ConnectError:
                    pass
            if time.monotonic() > deadline:
                raise QsdError(f"qemu-storage-daemon did not accept QMP on {sock} within {self.timeout} s")
            time.sleep(_POLL_INTERVAL)

    def stop(self) -> None:
        """Quit the daemon (``SIGKILL`` after the timeout); safe to call twice or after a failed start."""
        try:
            if self._client is not None and self._loop is not None:
                with contextlib.suppress(Exception):
                    self._run(self._client.execute("quit"))
                with contextlib.suppress(Exception):
                    self._run(self._client.disconnect())
        finally:
            self._client = None
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=self.timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
                finally:
                    if self._proc.stderr:
                        self._proc.stderr.close()
                    self._proc = None
            if self._loop is not None:
                self._loop.close()
                self._loop = None
            if self._sock_dir is not None:
                self._sock_dir.cleanup()
                self._sock_dir = None

    def __enter__(self) -> StorageDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- QMP -------------------------------------------------------------------

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        assert self._loop is not None, "the daemon is not running"
        timeout = timeout or self.timeout
        try:
            return self._loop.run_until_complete(asyncio.wait_for(coro, timeout))
        except TimeoutError:
            raise QsdError(f"qemu-storage-daemon did not answer within {timeout} s") from None

    def qmp(self, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Execute *cmd* and return the response as QMP shapes it: ``{"return": ...}`` or ``{"error": ...}``.

        :raises QsdError: when the daemon is not running.
        """
        if self._client is None:
            raise QsdError("qemu-storage-daemon is not running")
        try:
            return {"return": self._run(self._client.execute(cmd, args))}
        except ExecuteError as err:
            return _error_response(err)

    def run_job(self, job_id: str, start: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Start a job with the command *start* (``{"execute": ..., "arguments": ...}``) and wait for it.

        The event listener is registered before the command is sent, so no status change is missed.

        :returns: the command's response and the job's error (None on success); the job is left
            concluded, for the caller to dismiss as iotests' ``run_job`` does.
        :raises QsdError: when the job does not conclude within the timeout.
        """
        if self._client is None:
            raise QsdError("qemu-storage-daemon is not running")
        return self._run(self._run_job(self._client, job_id, start), self.job_timeout)

    async def _run_job(
        self, client: QMPClient, job_id: str, start: dict[str, Any]
    ) -> tuple[dict[str, Any], str | None]:
        listener = EventListener(("JOB_STATUS_CHANGE",))
        with client.listen(listener):
            try:
                response: dict[str, Any] = {
                    "return": await client.execute(start["execute"], start["arguments"])
                }
            except ExecuteError as err:
                return _error_response(err), None
            async for event in listener:
                data = event.get("data", {})
                if data.get("id") == job_id and data.get("status") == _JOB_CONCLUDED:
                    break
        jobs = await client.execute("query-jobs")
        for job in jobs:  # type: ignore[union-attr]
            if job["id"] == job_id:
                return response, job.get("error")
        raise QsdError(f"job {job_id} vanished before it was dismissed")
