"""blockfmt-img and blockfmt-io print what qemu-img and qemu-io 7.2 print, compared live on raw images.

Each case runs the real tool in one directory and blockfmt's ``main()`` in a twin directory with
the same images; after the qemu-iotests filters (program names, qemu-io timing) stdout, stderr and
the exit code must be equal, and so must the images afterwards.
"""

from __future__ import annotations

import io
import os
import subprocess

import pytest

from .conftest import Twins, file_bytes, normalise

pytestmark = pytest.mark.qemu

IMG_CASES = [
    # create
    ["create", "-f", "raw", "new.raw", "1M"],
    ["create", "-f", "raw", "new.raw", "1.5k"],
    ["create", "-f", "raw", "new.raw", "0"],
    ["create", "-q", "-f", "raw", "new.raw", "1k"],
    ["create", "-f", "raw", "-o", "size=2M", "new.raw"],
    ["create", "-f", "raw", "new.raw", "1X"],
    ["create", "-f", "raw", "new.raw", "1.5"],
    ["create", "-f", "raw", "new.raw", "18E"],
    ["create", "-f", "raw", "new.raw", "9E"],
    ["create", "-f", "raw", "new.raw"],
    ["create", "-f", "raw"],
    ["create", "-f", "nope", "new.raw", "1M"],
    ["create", "-f", "raw", "-o", "foo=1", "new.raw", "1M"],
    ["create", "-f", "raw", "-o", "size=xx", "new.raw"],
    ["create", "-f", "raw", "-o", "", "new.raw", "1M"],
    ["create", "-f", "raw", "-o", "size=1M,", "new.raw"],
    ["create", "-f", "raw", "-o", "help"],
    ["create", "-o", "?"],
    ["create", "-f", "nope", "-o", "help"],
    ["create", "-x", "new.raw", "1M"],
    ["create", "--foo", "new.raw", "1M"],
    ["create", "-f"],
    ["create", "-f", "raw", "new.raw", "-5"],
    ["create", "-f", "raw", "new.raw", "1M", "extra"],
    ["create", "-f", "raw", "nodir/new.raw", "1M"],
    # info
    ["info", "t.raw"],
    ["info", "--output=json", "t.raw"],
    ["info", "-f", "raw", "--output", "human", "big.raw"],
    ["info", "-U", "t.raw"],
    ["info", "-f", "nope", "t.raw"],
    ["info", "missing.raw"],
    ["info"],
    ["info", "t.raw", "u.raw"],
    ["info", "--output=xml", "t.raw"],
    ["info", "--output"],
    # check
    ["check", "t.raw"],
    ["check", "--output=json", "t.raw"],
    ["check", "-f", "raw", "-r", "all", "t.raw"],
    ["check", "-r", "leaks", "-f", "raw", "t.raw"],
    ["check", "-r", "bad", "t.raw"],
    ["check", "missing.raw"],
    ["check"],
    # map
    ["map", "t.raw"],
    ["map", "--output=json", "t.raw"],
    ["map", "-f", "raw", "--output=json", "big.raw"],
    ["map", "missing.raw"],
    ["map"],
    # compare
    ["compare", "t.raw", "t.raw"],
    ["compare", "t.raw", "u.raw"],
    ["compare", "-q", "t.raw", "u.raw"],
    ["compare", "t.raw", "big.raw"],
    ["compare", "big.raw", "t.raw"],
    ["compare", "t.raw", "tail.raw"],
    ["compare", "-s", "t.raw", "big.raw"],
    ["compare", "-f", "raw", "-F", "raw", "u.raw", "t.raw"],
    ["compare", "t.raw", "missing.raw"],
    ["compare", "-f", "nope", "t.raw", "u.raw"],
    ["compare", "t.raw"],
    # convert
    ["convert", "-O", "raw", "t.raw", "out.raw"],
    ["convert", "-f", "raw", "big.raw", "out.raw"],
    ["convert", "-q", "-O", "raw", "u.raw", "out.raw"],
    ["convert", "-O", "nope", "t.raw", "out.raw"],
    ["convert", "-O", "raw", "-o", "foo=1", "t.raw", "out.raw"],
    ["convert", "-O", "raw", "-o", "help"],
    ["convert", "missing.raw", "out.raw"],
    ["convert", "t.raw"],
    ["convert", "-O", "raw", "t.raw", "nodir/out.raw"],
    # the program itself
    [],
    ["frob"],
]

IO_CASES = [
    ["-f", "raw", "-c", "read -P 0x11 1M 64k", "t.raw"],
    ["-f", "raw", "-c", "read -pP 0x11 1M 64k", "-c", "read -P 0 0 512", "t.raw"],
    ["-f", "raw", "-c", "read -P 0x12 1M 64k", "-c", "read -P 0x22 3M 4k", "t.raw"],
    ["-f", "raw", "-c", "read -P 0x11 1048000 64k", "t.raw"],
    ["-f", "raw", "-c", "read -P 0x11 -s 512 -l 1024 1M 4k", "t.raw"],
    ["-f", "raw", "-c", "read -P 0 -l 5 0 2", "t.raw"],
    ["-f", "raw", "-c", "read -l 5 0 2", "t.raw"],
    ["-f", "raw", "-c", "read -v 1048560 40", "t.raw"],
    ["-f", "raw", "-c", "read -q -P 0x11 1M 4k", "-c", "read -q -P 1 1M 4k", "t.raw"],
    ["-f", "raw", "-c", "read 0x100000 0x10", "-c", "read 1 1", "-c", "read 0 1536", "t.raw"],
    ["-f", "raw", "-c", "write -P 0xab 512 1536", "-c", "read -P 0xab 512 1536", "t.raw"],
    ["-f", "raw", "-c", "write -pP 011 0 3", "-c", "read -P 9 0 3", "t.raw"],
    ["-f", "raw", "-c", "write 2M 4k", "-c", "read -P 0xcd 2M 4k", "t.raw"],
    ["-f", "raw", "-c", "write -z 1M 64k", "-c", "read -P 0 1M 64k", "t.raw"],
    ["-f", "raw", "-c", "write -z -u 1M 4k", "t.raw"],
    ["-f", "raw", "-c", "write -q -P 1 0 1", "-c", "discard -q 3M 4k", "t.raw"],
    ["-f", "raw", "-c", "discard 1M 64k", "-c", "read -P 0 1M 64k", "t.raw"],
    ["-f", "raw", "-c", "flush", "-c", "write 1M 1", "-c", "flush", "t.raw"],
    ["-f", "raw", "-c", "read 4M 512", "t.raw"],
    ["-f", "raw", "-c", "read 5M 512", "t.raw"],
    ["-f", "raw", "-c", "write 4194000 1024", "t.raw"],
    ["-f", "raw", "-c", "discard 4M 1", "t.raw"],
    ["-f", "raw", "-c", "read", "-c", "flush 1", "-c", "read 0 1 2", "t.raw"],
    ["-f", "raw", "-c", "read abc 1", "-c", "read 0 1x", "t.raw"],
    ["-f", "raw", "-c", "read 99999999999999999999 1", "-c", "read 0 3G", "t.raw"],
    ["-f", "raw", "-c", "read 0 -1", "-c", "write -x 0 1", "t.raw"],
    ["-f", "raw", "-c", "read -P 0x100 0 1", "-c", "read -P 0x 0 1", "-c", "write -P -1 0 1", "t.raw"],
    ["-f", "raw", "-c", "write -z -P 1 0 1", "-c", "write -u 0 1", "t.raw"],
    ["-f", "raw", "-c", "frob", "-c", "read 0 1", "t.raw"],
    ["-f", "raw", "-c", "close", "-c", "read 0 1", "t.raw"],
    ["-f", "raw", "-c", "open -r t.raw", "t.raw"],
    ["-c", "open -r t.raw", "-c", "read -P 0x22 3M 4k", "-c", "write 0 1"],
    ["-c", "read 0 1"],
    ["-f", "raw", "-c", "q", "-c", "read 0 1", "t.raw"],
    ["-f", "raw", "-r", "-c", "write 0 512", "-c", "discard 0 512", "t.raw"],
    ["-f", "raw", "-U", "-c", "read 0 1", "t.raw"],
    ["-f", "raw", "-r", "-U", "-c", "read 0 1", "t.raw"],
    ["-c", "write -P 0x51 0 512", "t.raw"],
    ["-r", "-c", "read -P 0x11 1M 64k", "t.raw"],
    ["-f", "raw", "-c", "read 0 1", "missing.raw"],
    ["-f", "nope", "-c", "read 0 1", "t.raw"],
]


def _id(args: list[str]) -> str:
    return " ".join(args) or "<none>"


@pytest.mark.parametrize(
    "args", [["-f", "raw", "--cmd"], ["-x", "t.raw"], ["--foo"], ["t.raw", "u.raw"]], ids=_id
)
def test_io_usage_errors_match_qemu_io(twins: Twins, args: list[str]) -> None:
    """Bad qemu-io command lines: same error line, usage text and exit code."""
    theirs, ours = twins.both("io", args)
    assert ours == theirs


@pytest.mark.parametrize("args", IMG_CASES, ids=_id)
def test_img_matches_qemu_img(twins: Twins, args: list[str]) -> None:
    """Same output, exit code and resulting images as qemu-img."""
    theirs, ours = twins.both("img", args)
    assert ours == theirs
    for name in ("t.raw", "u.raw", "out.raw"):
        assert file_bytes(twins.ours / name) == file_bytes(twins.qemu / name), name
    assert (twins.ours / "new.raw").exists() == (twins.qemu / "new.raw").exists()
    if (twins.qemu / "new.raw").exists():
        assert file_bytes(twins.ours / "new.raw") == file_bytes(twins.qemu / "new.raw")


@pytest.mark.parametrize("args", IO_CASES, ids=_id)
def test_io_matches_qemu_io(twins: Twins, args: list[str]) -> None:
    """Same output, exit code and resulting image as qemu-io."""
    theirs, ours = twins.both("io", args)
    assert ours == theirs
    assert file_bytes(twins.ours / "t.raw") == file_bytes(twins.qemu / "t.raw")


def test_io_stdin_commands_match_qemu_io(twins: Twins, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without -c, commands come from stdin after the prompt, which the iotests filter drops."""
    script = "read -P 0x11 1M 64k\nwrite -P 5 0 1\nread -P 1 0 1\n"
    theirs = subprocess.run(
        [twins.qemu_io, "-f", "raw", "t.raw"],
        input=script,
        capture_output=True,
        text=True,
        cwd=twins.qemu,
        env=dict(os.environ, LC_ALL="C"),
        check=False,
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    ours = twins.run_ours("io", ["-f", "raw", "t.raw"])
    assert ours.code == theirs.returncode == 1
    assert ours.stdout == normalise(theirs.stdout)
    assert "Pattern verification failed at offset 0, 1 bytes\n" in ours.stdout
    assert file_bytes(twins.ours / "t.raw") == file_bytes(twins.qemu / "t.raw")


def test_convert_progress_starts_and_ends_like_qemu_img(twins: Twins) -> None:
    """-p draws ``    (0.00/100%)\\r`` first and ``    (100.00/100%)\\r`` twice then a newline at the end."""
    args = ["convert", "-p", "-O", "raw", "t.raw", "out.raw"]
    theirs = subprocess.run([twins.qemu_img, *args], capture_output=True, cwd=twins.qemu, check=False)
    ours = twins.run_ours("img", args)
    assert ours.code == theirs.returncode == 0
    for out in (theirs.stdout.decode(), ours.stdout):
        assert out.startswith("    (0.00/100%)\r")
        assert out.endswith("    (100.00/100%)\r    (100.00/100%)\r\n")
    steps = ours.stdout.split("\r")[:-1]
    percents = [float(step.strip()[1:].split("/")[0]) for step in steps]
    assert percents == sorted(percents)
    assert file_bytes(twins.ours / "out.raw") == file_bytes(twins.qemu / "out.raw")
