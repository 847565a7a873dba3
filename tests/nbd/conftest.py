"""Start and stop ``blockfmt-nbd`` servers for the tests, one per test, on a unix socket in tmp_path.

Every server is a child of the test: it is waited for with a timeout and killed in ``finally``, so
no nbdkit outlives its test. Missing nbdkit or NBD client tools skip a test locally and fail it
under ``CI=true`` (the README's test command installs them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from blockfmt.testing.qemu import in_ci, run_tool

#: how long a server may take to listen, and to exit once asked
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def require_tool(name: str, package: str) -> str:
    """Path of *name*; skip when absent, fail under ``CI=true``."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found (Debian package {package})"
        if in_ci():
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def nbdkit() -> str:
    return require_tool("nbdkit", "nbdkit")


@pytest.fixture(scope="session")
def nbdinfo() -> str:
    return require_tool("nbdinfo", "libnbd-bin")


@pytest.fixture(scope="session")
def nbdcopy() -> str:
    return require_tool("nbdcopy", "libnbd-bin")


def blockfmt_nbd() -> list[str]:
    """This installation's ``blockfmt-nbd``: the console script beside the running interpreter."""
    return [str(Path(sys.executable).with_name("blockfmt-nbd"))]


@dataclass
class Server:
    """A running ``blockfmt-nbd`` (whose process became nbdkit) and its address."""

    process: subprocess.Popen[bytes]
    socket: Path
    log: Path

    @property
    def uri(self) -> str:
        return f"nbd+unix:///?socket={self.socket}"

    def uri_for(self, export: str) -> str:
        return f"nbd+unix:///{export}?socket={self.socket}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send *sig* and wait; a server that does not exit in time is killed (and the test fails)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
            pytest.fail(f"server did not exit on signal {sig}:\n{self.output()}")


#: the Flags of a listening socket in /proc/net/unix (__SO_ACCEPTCON)
_ACCEPTING = "00010000"


def _listening(socket: Path) -> bool:
    """Whether a unix socket at *socket* listens. Its file appears at bind(), before listen(): a
    client connecting in between is refused (seen under load). Read from /proc/net/unix rather
    than by connecting, which would use up a server that serves one client."""
    suffix = f" {socket}"
    with open("/proc/net/unix", encoding="utf-8", errors="replace") as table:
        next(table)  # the column names
        return any(line.split()[3] == _ACCEPTING and line.rstrip("\n").endswith(suffix) for line in table)


def start_server(tmp_path: Path, image: Path | str, args: Sequence[str] = ()) -> Server:
    """Start ``blockfmt-nbd -k <socket> <args> <image>`` and wait until it accepts connections.

    :raises AssertionError: (via pytest.fail) when it exits early or never listens.
    """
    sockdir = Path(os.environ.get("TMPDIR", "/tmp"))  # unix socket paths must stay short
    socket = sockdir / f"bf-nbd-{os.getpid()}-{time.monotonic_ns()}.sock"
    log = tmp_path / f"{socket.stem}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*blockfmt_nbd(), "-k", str(socket), *args, str(image)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = Server(process, socket, log)
    deadline = time.monotonic() + START_TIMEOUT
    while not _listening(socket):
        if process.poll() is not None:
            pytest.fail(f"blockfmt-nbd exited with {process.returncode}:\n{server.output()}")
        if time.monotonic() > deadline:
            server.stop(signal.SIGKILL)
            pytest.fail(f"blockfmt-nbd did not listen within {START_TIMEOUT} s:\n{server.output()}")
        time.sleep(0.05)
    return server


@pytest.fixture
def serve(tmp_path: Path, nbdkit: str) -> Iterator[Callable[..., Server]]:
    """``serve(image, *args) -> Server``; every server started is stopped (killed if need be) at teardown."""
    started: list[Server] = []

    def start(image: Path | str, *args: str) -> Server:
        server = start_server(tmp_path, image, args)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=STOP_TIMEOUT)
        server.socket.unlink(missing_ok=True)


def run_ok(argv: Sequence[str], timeout: float = 120) -> str:
    """Run a client; fail the test with its output unless it exits 0."""
    result = run_tool(argv, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{result.output}"
    return result.stdout


def run_once_connected(argv: Sequence[str], within: float = 15) -> str:
    """:func:`run_ok`, retried while the server still winds down a closed connection holding the only slot."""
    deadline = time.monotonic() + within
    while True:
        result = run_tool(argv, timeout=120)
        if result.returncode == 0:
            return result.stdout
        assert time.monotonic() < deadline, f"{' '.join(map(str, argv))} failed:\n{result.output}"
        time.sleep(0.1)
