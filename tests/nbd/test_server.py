"""``blockfmt-nbd`` as a server process: locks, dirty VHDX, command-line errors, fork and pid file."""

from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import time

import pytest

import blockfmt
from blockfmt.testing.qemu import run_tool

from .conftest import blockfmt_nbd, run_ok, run_once_connected

pytestmark = pytest.mark.qemu

MiB = 1 << 20
LOG_REPLAY_IMAGE = "discutils-vhdx-log-replay.vhdx"
#: ``qemu-img convert -O raw`` of that image after ``qemu-img check -r all`` (its README)
LOG_REPLAY_RAW_SHA256 = "3ba3b309425b7ff5e8e0199edceed95226250f880c53b24e8eae93865f3fad5e"


@pytest.fixture
def vhdx(tmp_path):
    path = tmp_path / "d.vhdx"
    blockfmt.create(path, "vhdx", 16 * MiB)
    return path


def test_qemu_io_cannot_write_an_exported_image(serve, qemu_io, vhdx):
    server = serve(vhdx, "-t")
    result = run_tool([qemu_io, "-f", "vhdx", "-c", "write 0 512", str(vhdx)])
    assert result.returncode != 0
    assert 'Failed to get "write" lock' in result.output, result.output
    run_ok([qemu_io, "-f", "vhdx", "-U", "-r", "-c", "read 0 512", str(vhdx)])  # -U still reads
    assert server.process.poll() is None


def test_a_second_writable_export_is_refused_in_one_line(serve, vhdx, tmp_path):
    serve(vhdx, "-t")
    result = run_tool([*blockfmt_nbd(), "-k", str(tmp_path / "second.sock"), str(vhdx)], timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        f"blockfmt-nbd: Failed to blk_new_open '{vhdx}': Failed to get \"write\" lock\n"
        f"Is another process using the image [{vhdx}]?\n"
    )


def test_locks_are_released_when_the_server_exits(serve, qemu_io, vhdx):
    server = serve(vhdx, "-t")
    assert server.stop() == 0
    run_ok([qemu_io, "-f", "vhdx", "-c", "write -P 7 0 512", str(vhdx)])


def test_dirty_vhdx_needs_the_in_memory_replay_option(sample_image, tmp_path):
    image = sample_image(LOG_REPLAY_IMAGE)
    result = run_tool([*blockfmt_nbd(), "-r", "-k", str(tmp_path / "s.sock"), str(image)], timeout=60)
    assert result.returncode == 1
    assert "contains a log that needs to be replayed" in result.stderr, result.stderr


def test_dirty_vhdx_is_served_read_only_with_its_log_replayed_in_memory(
    serve, sample_image, qemu_img, tmp_path
):
    image = sample_image(LOG_REPLAY_IMAGE)
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    server = serve(image, "-r", "--open-option=log_replay=memory")
    target = tmp_path / "served.raw"
    run_ok([qemu_img, "convert", "-O", "raw", server.uri, str(target)])
    assert hashlib.sha256(target.read_bytes()).hexdigest() == LOG_REPLAY_RAW_SHA256
    assert hashlib.sha256(image.read_bytes()).hexdigest() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "blockfmt-nbd: Invalid number of arguments\nTry `blockfmt-nbd --help' for more information.\n"),
        (["--bogus", "x"], "blockfmt-nbd: unrecognized option '--bogus'\n"
         "Try `blockfmt-nbd --help' for more information.\n"),
        (["-e", "x", "f"], "blockfmt-nbd: Invalid shared device number 'x'\n"),
        (["--discard=foo", "f"], "blockfmt-nbd: Invalid discard mode `foo'\n"),
        (["--cache=foo", "f"], "blockfmt-nbd: Invalid cache mode `foo'\n"),
        (["-p", "99999", "f"], "blockfmt-nbd: Invalid port number `99999'\n"),
        (["nonexistent.vhdx"], "blockfmt-nbd: Failed to blk_new_open 'nonexistent.vhdx': "
         "Could not open 'nonexistent.vhdx': No such file or directory\n"),
        (["-f", "qcow9", "f"], "blockfmt-nbd: Failed to blk_new_open 'f': Unknown driver 'qcow9'\n"),
    ],
)  # fmt: skip
def test_command_line_errors_are_one_line(args, message, tmp_path):
    (tmp_path / "f").write_bytes(bytes(4096))
    result = run_tool([*blockfmt_nbd(), *args], cwd=str(tmp_path), timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", message)


def test_fork_returns_once_listening_and_writes_the_pid_file(nbdkit, qemu_img, vhdx, tmp_path):
    socket = tmp_path / "s.sock"
    pid_file = tmp_path / "server.pid"
    result = run_tool(
        [*blockfmt_nbd(), "--fork", "-t", "--pid-file", str(pid_file), "-k", str(socket), str(vhdx)]
    )
    assert result.returncode == 0, result.output
    pid = int(pid_file.read_text())
    try:
        assert socket.exists()
        run_ok([qemu_img, "info", f"nbd+unix:///?socket={socket}"])
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.05)
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)


def test_shared_limits_concurrent_clients(serve, nbdinfo, qemu_io, vhdx, tmp_path):
    server = serve(vhdx, "-t", "-e", "1")
    holder = start_holding_client(qemu_io, server.uri)
    try:
        result = run_tool([nbdinfo, server.uri], timeout=60)
        assert result.returncode != 0
    finally:
        holder.communicate(timeout=30)
    run_once_connected([nbdinfo, server.uri])


def start_holding_client(qemu_io: str, uri: str) -> subprocess.Popen[str]:
    """An interactive qemu-io that has connected and read once; it stays connected until stdin closes."""
    client = subprocess.Popen(
        [qemu_io, "-f", "raw", uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write("read 0 512\n")
    client.stdin.flush()
    ready, _, _ = select.select([client.stdout], [], [], 30)
    if not ready:
        client.kill()
        pytest.fail("qemu-io did not answer within 30 s")
    assert "read 512/512 bytes" in client.stdout.readline()
    return client
