"""Running blockfmt-img/-io in-process and the real qemu-img/qemu-io side by side on twin directories."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from blockfmt.cli import img as img_cli
from blockfmt.cli import io as io_cli
from blockfmt.testing.qemu import run_tool
from iotests.filters import filter_prog_names, filter_qemu_io

#: the standard raw image: 4 MiB, 64 KiB of 0x11 at 1 MiB, 4 KiB of 0x22 at 3 MiB
IMAGE_SIZE = 4 << 20


@dataclass(frozen=True)
class Outcome:
    """Exit code and the two output streams of one run, after the iotests filters."""

    code: int
    stdout: str
    stderr: str


def normalise(text: str) -> str:
    """qemu-iotests' normalisation: program names, qemu-io timing lines."""
    return filter_qemu_io(filter_prog_names(text))


@dataclass
class Twins:
    """Two directories prepared identically: ``qemu`` for the real tools, ``ours`` for blockfmt's."""

    qemu: Path
    ours: Path
    qemu_img: str
    qemu_io: str
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch

    def run_qemu(self, tool: str, args: Sequence[str]) -> Outcome:
        binary = self.qemu_img if tool == "img" else self.qemu_io
        result = run_tool([binary, *args], cwd=str(self.qemu))
        # glibc's getopt names the program by argv[0], which is the binary's full path here
        stdout, stderr = (
            text.replace(f"{binary}:", f"{os.path.basename(binary)}:")
            for text in (result.stdout, result.stderr)
        )
        return Outcome(result.returncode, normalise(stdout), normalise(stderr))

    def run_ours(self, tool: str, args: Sequence[str]) -> Outcome:
        return run_in_process(self.capsys, self.monkeypatch, self.ours, tool, args)

    def both(self, tool: str, args: Sequence[str]) -> tuple[Outcome, Outcome]:
        return self.run_qemu(tool, args), self.run_ours(tool, args)


def run_in_process(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cwd: Path,
    tool: str,
    args: Sequence[str],
) -> Outcome:
    """Call ``main()`` of blockfmt-img (*tool* ``"img"``) or blockfmt-io in *cwd*.

    Any exception other than the ones main() handles propagates and fails the test.
    """
    main = img_cli.main if tool == "img" else io_cli.main
    with monkeypatch.context() as patch:
        patch.chdir(cwd)
        capsys.readouterr()
        code = main(list(args))
    out, err = capsys.readouterr()
    return Outcome(code, normalise(out), normalise(err))


def make_raw_images(qemu_img: str, qemu_io: str, directory: Path) -> None:
    """The images every comparison starts from, made by the real tools so both sides are equal."""
    specs: dict[str, tuple[int, list[str]]] = {
        "t.raw": (IMAGE_SIZE, ["write -P 0x11 1M 64k", "write -P 0x22 3M 4k"]),
        "u.raw": (IMAGE_SIZE, ["write -P 0x11 1M 64k", "write -P 0x33 2M 512", "write -P 0x22 3M 4k"]),
        "big.raw": (IMAGE_SIZE + (1 << 20), ["write -P 0x11 1M 64k", "write -P 0x22 3M 4k"]),
        "tail.raw": (
            IMAGE_SIZE + (1 << 20),
            ["write -P 0x11 1M 64k", "write -P 0x22 3M 4k", "write 4194817 3"],
        ),
    }
    for name, (size, writes) in specs.items():
        path = str(directory / name)
        assert run_tool([qemu_img, "create", "-q", "-f", "raw", path, str(size)]).returncode == 0
        commands = [arg for cmd in writes for arg in ("-c", cmd)]
        assert run_tool([qemu_io, "-f", "raw", *commands, path]).returncode == 0


@pytest.fixture
def twins(
    tmp_path: Path,
    qemu_img: str,
    qemu_io: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Twins:
    """Twin directories holding the standard raw images."""
    pair = Twins(tmp_path / "qemu", tmp_path / "ours", qemu_img, qemu_io, capsys, monkeypatch)
    for directory in (pair.qemu, pair.ours):
        directory.mkdir()
        make_raw_images(qemu_img, qemu_io, directory)
    return pair


@pytest.fixture
def run_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[..., Outcome]:
    """``run_cli("img", [...])`` runs blockfmt-img's main() in tmp_path."""

    def run(tool: str, args: Sequence[str], cwd: Path | None = None) -> Outcome:
        return run_in_process(capsys, monkeypatch, cwd or tmp_path, tool, args)

    return run


def file_bytes(path: Path) -> bytes:
    """The whole content of a (small) file, or b"<missing>"."""
    return path.read_bytes() if os.path.exists(path) else b"<missing>"
