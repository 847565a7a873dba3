"""No blockfmt-img command line ends in a traceback, and Ctrl-C ends it as it ends qemu-img."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from blockfmt.cli import img as img_cli

from .conftest import Outcome

#: option letters and words every subcommand might see, good and bad
_PIECES = [
    "-f",
    "vhdx",
    "vdi",
    "raw",
    "nope",
    "-O",
    "-o",
    "size=1M",
    "help",
    "static=on",
    "log_size=x",
    "-q",
    "-U",
    "-p",
    "-n",
    "-c",
    "-l",
    "-s",
    "-S",
    "0",
    "4k",
    "-1",
    "1E",
    "18E",
    "--output=json",
    "--output",
    "--shrink",
    "--size",
    "-b",
    "-F",
    "-g",
    "--add",
    "--merge",
    "-a",
    "-d",
    "-t",
    "-T",
    "none",
    "x",
    "--object",
    "secret,id=s,data=1",
    "--image-opts",
    "driver=raw,file.filename=t.raw",
    "bs=1k",
    "if=t.raw",
    "of=o.raw",
    "count=2",
    "skip=x",
    "-w",
    "--pattern=0x11",
    "--start-offset=1",
    "--max-length=x",
    "t.raw",
    "t.vdi",
    "missing",
    "+1M",
    "--",
    "-r",
    "all",
    "leaks",
    "--preallocation=full",
    "-B",
    "-m",
    "17",
    "-W",
]


def _command_lines(count: int) -> list[list[str]]:
    rng = random.Random(20261129)
    return [
        [rng.choice([*img_cli.COMMANDS, "frob", "-V"]), *rng.choices(_PIECES, k=rng.randrange(0, 7))]
        for _ in range(count)
    ]


@pytest.mark.parametrize("args", _command_lines(300), ids=" ".join)
def test_random_command_lines_exit_cleanly(
    run_cli: Callable[..., Outcome],
    tmp_path: Path,
    args: list[str],
) -> None:
    """main() returns an exit code for any command line: library errors become messages."""
    raw = tmp_path / "t.raw"
    raw.write_bytes(bytes(1 << 20))
    img_cli.main(["create", "-q", "-f", "vdi", str(tmp_path / "t.vdi"), "1M"])
    outcome: Outcome = run_cli("img", args)
    assert outcome.code in (0, 1, 2, 3, 63)
    assert "Traceback" not in outcome.stderr


def _script() -> str:
    return os.path.join(os.path.dirname(sys.executable), "blockfmt-img")


def test_ctrl_c_ends_by_signal_and_removes_the_partial_target(tmp_path: Path) -> None:
    """SIGINT during dd: killed by the signal like qemu-img, no traceback, no half-written output."""
    source = tmp_path / "big.raw"
    with open(source, "wb") as file:
        file.truncate(64 << 30)  # a sparse 64 GiB disk: the copy runs long enough to be interrupted
    target = tmp_path / "out.vdi"
    proc = subprocess.Popen(
        [_script(), "dd", "-O", "vdi", f"if={source}", f"of={target}", "bs=1M"],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert target.exists(), "dd never created its target"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGINT
    assert "Traceback" not in stderr
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["big.raw"]
