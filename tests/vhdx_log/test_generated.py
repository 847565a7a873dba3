"""Dirty logs written by blockfmt's LogWriter (sample_images/generate.py), replayed by QEMU and blockfmt."""

from __future__ import annotations

import bz2
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import LogReplayRequiredError
from blockfmt.fileio import OsImageFile
from blockfmt.testing.qemu import run_tool
from blockfmt_vhdx.log import find_log_sequence

from .headers import current_header, set_log_guid
from .test_samples import sha256_file, sha256_image

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"
NAMES = ["blockfmt-dirtylog-64M", "blockfmt-dirtylog-wrapped"]


def _generator():
    spec = importlib.util.spec_from_file_location("blockfmt_sample_generate", SAMPLES / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def committed_digest(name: str) -> str:
    return (SAMPLES / f"{name}.sha256").read_text().split()[0]


@pytest.fixture
def committed(tmp_path):
    """Decompress a committed generated image into tmp_path."""

    def decompress(name: str) -> Path:
        target = tmp_path / f"{name}.vhdx"
        with bz2.open(SAMPLES / f"{name}.vhdx.bz2", "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return target

    return decompress


def read_sequence(path: Path):
    header = current_header(path)
    file = OsImageFile(str(path), read_only=True)
    try:
        return header, find_log_sequence(file, header.log_offset, header.log_length, header.log_guid)
    finally:
        file.close()


@pytest.mark.parametrize("name", NAMES)
def test_regenerated_image_has_the_committed_digest(name, tmp_path):
    path, digest = _generator().generate(name, tmp_path)
    assert digest == committed_digest(name)
    with pytest.raises(LogReplayRequiredError):
        blockfmt.open(path, read_only=True)
    with blockfmt.open(path, read_only=False) as image:
        assert sha256_image(image) == digest


@pytest.mark.parametrize("name", NAMES)
def test_committed_image_needs_its_log(name, committed):
    """Without the log the last write is invisible; replayed in memory, everything is there."""
    path = committed(name)
    header, sequence = read_sequence(path)
    assert header.log_guid.int != 0 and sequence is not None
    before = sha256_file(path)
    with blockfmt.open(path, read_only=True, options={"log_replay": "memory"}) as image:
        assert sha256_image(image) == committed_digest(name)
    assert sha256_file(path) == before
    set_log_guid(path, None)
    with blockfmt.open(path, read_only=True) as image:
        assert sha256_image(image) != committed_digest(name)


def test_wrapped_image_head_entry_crosses_the_end_of_the_log(committed):
    header, sequence = read_sequence(committed("blockfmt-dirtylog-wrapped"))
    assert sequence is not None and len(sequence.entries) == 1
    head = sequence.head
    assert head.position + head.header.entry_length > header.log_length
    assert head.header.tail == head.position


@pytest.mark.qemu
@pytest.mark.parametrize("name", NAMES)
def test_qemu_replays_blockfmt_log(name, committed, qemu_img, tmp_path):
    path = committed(name)
    result = run_tool([qemu_img, "check", "-r", "all", "-f", "vhdx", str(path)])
    assert result.returncode == 0, result.output
    assert "No errors were found on the image." in result.output
    assert current_header(path).log_guid.int == 0
    raw = tmp_path / "out.raw"
    result = run_tool([qemu_img, "convert", "-f", "vhdx", "-O", "raw", str(path), str(raw)])
    assert result.returncode == 0, result.output
    assert sha256_file(raw) == committed_digest(name)


@pytest.mark.qemu
def test_qemu_and_blockfmt_replay_to_the_same_file(committed, qemu_img, tmp_path):
    ours = committed("blockfmt-dirtylog-64M")
    theirs = tmp_path / "theirs.vhdx"
    shutil.copyfile(ours, theirs)
    blockfmt.open(ours, read_only=False).close()
    assert run_tool([qemu_img, "check", "-r", "all", "-f", "vhdx", str(theirs)]).returncode == 0
    assert sha256_file(ours, 1 << 20) == sha256_file(theirs, 1 << 20)
