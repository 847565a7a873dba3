"""Bad invocations end in one QEMU-style error and a non-zero exit code, never in a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Outcome

BAD_IMG = [
    [],
    ["frob"],
    ["create"],
    ["create", "-f"],
    ["create", "-f", "raw", "x.raw", "1Q"],
    ["create", "-f", "raw", "x.raw", "99999999999999999999999"],
    ["create", "-f", "raw", "x.raw", ""],
    ["create", "-f", "nope", "x.raw", "1M"],
    ["create", "-f", "raw", "-o", "size=-1", "x.raw"],
    ["create", "-f", "raw", "-o", "=,,=", "x.raw", "1M"],
    ["create", "-f", "vhdx", "-o", "block_size=3M", "x.raw", "64M"],
    ["create", "-f", "vhdx", "-o", "subformat=odd", "x.raw", "64M"],
    ["create", "-f", "vhdx", "x.raw", "100T"],
    ["create", "-f", "vdi", "-o", "static=2", "x.raw", "1M"],
    ["create", "-f", "raw", "/proc/nope/x.raw", "1M"],
    ["info", "missing.raw"],
    ["info", "-f", "vhdx", "garbage.bin"],
    ["info", "-f", "vdi", "garbage.bin"],
    ["info", "-f", "vdi", "empty.bin"],
    ["info", "-f", "vhdx", "empty.bin"],
    ["info", "."],
    ["info", "--output=yaml", "garbage.bin"],
    ["check", "-r", "all", "missing.raw"],
    ["check", "-f", "vhdx", "garbage.bin"],
    ["check", "-r", "sometimes", "garbage.bin"],
    ["map", "-f", "vdi", "garbage.bin"],
    ["map", "--output"],
    ["compare", "garbage.bin"],
    ["compare", "-f", "vhdx", "garbage.bin", "garbage.bin"],
    ["convert", "-O", "vhdx", "-o", "subformat=odd", "garbage.bin", "out.vhdx"],
    ["convert", "-O", "vdi", "missing.raw", "out.vdi"],
    ["convert", "-f", "vdi", "garbage.bin", "out.raw"],
    ["convert", "-p"],
]

BAD_IO = [
    ["-c", "read 0 1"],
    ["-c", "read 0 1", "missing.raw"],
    ["-f", "vhdx", "-c", "read 0 1", "garbage.bin"],
    ["-f", "raw", "-c", "read 0 1", "."],
    ["-f", "raw", "-c", "read 1M 1", "-c", "write 1M 1", "-c", "discard 2M 1", "garbage.bin"],
    ["-f", "raw", "-c", "read -P zz 0 1", "-c", "read -s 5 0 1", "-c", "read -l x -P 1 0 1", "garbage.bin"],
    ["-f", "raw", "-c", "write -P 1 -z 0 1", "-c", "write -c", "-c", "open", "garbage.bin"],
    ["-f", "raw", "-c", "open garbage.bin", "-c", "close", "-c", "close", "-c", "flush", "garbage.bin"],
    ["-f", "raw", "-U", "-c", "write 0 1", "garbage.bin"],
    ["-f", "raw", "-r", "-U", "-c", "open -U garbage.bin", "garbage.bin"],
    ["--nope"],
    ["a", "b"],
]


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    (tmp_path / "garbage.bin").write_bytes(bytes(range(256)) * 8192)
    (tmp_path / "empty.bin").write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize("args", BAD_IMG, ids=lambda a: " ".join(a) or "<none>")
def test_bad_img_invocations_fail_cleanly(
    run_cli: Callable[..., Outcome], scratch: Path, args: list[str]
) -> None:
    """Exit code 1 or 2, errors prefixed with the program name; main() lets nothing else escape."""
    outcome = run_cli("img", args, scratch)
    assert outcome.code in (1, 2)
    assert outcome.stderr.startswith("qemu-img: ")
    assert "Traceback" not in outcome.stderr


@pytest.mark.parametrize("args", BAD_IO, ids=lambda a: " ".join(a))
def test_bad_io_invocations_fail_cleanly(
    run_cli: Callable[..., Outcome], scratch: Path, args: list[str]
) -> None:
    """Exit code 1 and something said about it; main() lets nothing else escape."""
    outcome = run_cli("io", args, scratch)
    assert outcome.code == 1
    assert outcome.stdout or outcome.stderr
    assert "Traceback" not in outcome.stderr


def test_create_failure_leaves_existing_file_untouched(
    run_cli: Callable[..., Outcome], scratch: Path
) -> None:
    """A create with a bad option reports it and keeps the file that was there."""
    before = (scratch / "garbage.bin").read_bytes()
    outcome = run_cli("img", ["create", "-f", "vhdx", "-o", "block_size=3M", "garbage.bin", "64M"], scratch)
    assert outcome.code == 1
    assert outcome.stderr.startswith("qemu-img: garbage.bin: ")
    assert (scratch / "garbage.bin").read_bytes() == before


def test_unknown_format_messages(run_cli: Callable[..., Outcome], scratch: Path) -> None:
    """qemu-img's two wordings: 'Unknown file format' for create, 'Unknown driver' for open."""
    assert run_cli("img", ["create", "-f", "nope", "x", "1M"], scratch).stderr == (
        "qemu-img: x: Unknown file format 'nope'\n"
    )
    assert run_cli("img", ["info", "-f", "nope", "garbage.bin"], scratch).stderr == (
        "qemu-img: Could not open 'garbage.bin': Unknown driver 'nope'\n"
    )
    assert run_cli("io", ["-f", "nope", "garbage.bin"], scratch).stderr == (
        "qemu-io: can't open device garbage.bin: Unknown driver 'nope'\n"
    )


def _script(name: str) -> str:
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.exists():
        pytest.skip(f"console script {name} not installed")
    return str(path)


@pytest.mark.parametrize(
    ("script", "args", "code", "stderr"),
    [
        ("blockfmt-img", ["info", "missing.raw"], 1, "Could not open 'missing.raw': "),
        ("blockfmt-img", ["frob"], 1, "Command not found: frob\nTry 'blockfmt-img --help'"),
        (
            "blockfmt-img",
            ["check", "-f", "raw", "garbage.bin"],
            63,
            "This image format does not support checks",
        ),
        ("blockfmt-io", ["-f", "vdi", "-c", "read 0 1", "garbage.bin"], 1, "can't open device garbage.bin: "),
    ],
)
def test_console_scripts(scratch: Path, script: str, args: list[str], code: int, stderr: str) -> None:
    """The installed entry points: run() exits with main()'s code and prefixes the invoked name."""
    proc = subprocess.run(
        [_script(script), *args],
        capture_output=True,
        text=True,
        cwd=scratch,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ, LC_ALL="C"),
        check=False,
    )
    assert proc.returncode == code
    assert proc.stderr.startswith(f"{script}: {stderr}")
    assert "Traceback" not in proc.stderr


def test_module_entry_keeps_program_name(scratch: Path) -> None:
    """run() names itself after argv[0], so a renamed launcher prints its own name."""
    code = "import sys; sys.argv[0] = 'mytool'; from blockfmt.cli.img import run; run()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "info"], capture_output=True, text=True, cwd=scratch, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr == "mytool: Expecting one image file name\nTry 'mytool --help' for more information\n"
