"""A client that dies mid-write, or an nbdkit that is killed, leaves a VHDX QEMU finds clean.

As in the log crash sweep, the image is reopened read-write afterwards (here by qemu-io, so QEMU
replays any log the kill left) and then ``qemu-img check`` must report no errors; data flushed
before the kill must read back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import blockfmt
from blockfmt.testing.qemu import run_tool

from .conftest import run_ok, run_once_connected

pytestmark = pytest.mark.qemu

MiB = 1 << 20
SOURCE_SIZE = 64 * MiB
#: bytes the image file must have grown by before the kill: the copy is well under way
GROWN_BEFORE_KILL = 8 * MiB


def start_copy(qemu_img: str, source: Path, uri: str) -> subprocess.Popen[bytes]:
    """qemu-img writing *source* into the export, as a raw NBD target."""
    return subprocess.Popen(
        [qemu_img, "convert", "-n", "-f", "raw", "-O", "raw", str(source), uri],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )


def wait_until_grown(image: Path, start_size: int, copy: subprocess.Popen[bytes]) -> None:
    """Return once the image grew by GROWN_BEFORE_KILL while the copy still runs."""
    deadline = time.monotonic() + 60
    while os.path.getsize(image) < start_size + GROWN_BEFORE_KILL:
        assert copy.poll() is None, "the copy ended before it could be interrupted"
        assert time.monotonic() < deadline, "the copy never got going"
        time.sleep(0.01)
    assert copy.poll() is None, "the copy ended before it could be interrupted"


def reopen_and_check(qemu_io: str, qemu_img: str, image: Path) -> None:
    run_ok([qemu_io, "-f", "vhdx", "-c", "flush", str(image)])  # read-write open: QEMU replays a log
    check = run_tool([qemu_img, "check", "-f", "vhdx", str(image)])
    assert check.returncode == 0 and "No errors were found on the image." in check.output, check.output


@pytest.fixture
def workload(tmp_path):
    """An empty VHDX and 64 MiB of non-zero data to copy into it."""
    image = tmp_path / "d.vhdx"
    blockfmt.create(image, "vhdx", 2 * SOURCE_SIZE, block_size=MiB)
    source = tmp_path / "source.raw"
    source.write_bytes(os.urandom(MiB) * (SOURCE_SIZE // MiB))
    return image, source


def test_client_killed_mid_write(serve, qemu_img, qemu_io, workload):
    image, source = workload
    server = serve(image, "-t", "-e", "0", "--cache=writethrough")
    copy = start_copy(qemu_img, source, server.uri)
    try:
        wait_until_grown(image, os.path.getsize(image), copy)
    finally:
        copy.kill()
        copy.wait(timeout=30)
    run_once_connected([qemu_io, "-f", "raw", "-c", "write -P 0x33 100M 64k", server.uri])  # still serving
    assert server.stop() == 0
    reopen_and_check(qemu_io, qemu_img, image)
    run_ok([qemu_io, "-r", "-f", "vhdx", "-c", "read -P 0x33 100M 64k", str(image)])


def test_nbdkit_killed_mid_write(serve, qemu_img, qemu_io, workload):
    image, source = workload
    server = serve(image, "-t", "-e", "0", "--cache=writethrough")
    run_ok([qemu_io, "-f", "raw", "-c", "write -P 0x44 100M 1M", "-c", "flush", server.uri])
    copy = start_copy(qemu_img, source, server.uri)
    try:
        wait_until_grown(image, os.path.getsize(image), copy)
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
        assert copy.wait(timeout=30) != 0
    finally:
        if copy.poll() is None:
            copy.kill()
            copy.wait(timeout=30)
    reopen_and_check(qemu_io, qemu_img, image)
    run_ok([qemu_io, "-r", "-f", "vhdx", "-c", "read -P 0x44 100M 1M", str(image)])
