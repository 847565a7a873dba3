"""Replay of real dirty logs: QEMU's iotest 070 image and a Hyper-V image (NOTES.md #1)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import LogReplayRequiredError
from blockfmt.fileio import OsImageFile
from blockfmt.testing.qemu import run_tool
from blockfmt_vhdx.log import find_log_sequence

from .headers import current_header, set_log_guid

MiB = 1 << 20
DIRTY_070 = "iotest-dirtylog-10G-4M.vhdx"
HYPERV = "discutils-vhdx-log-replay.vhdx"
#: README in ../shared/sample_images/real: qemu-img convert -O raw after check -r all
HYPERV_SHA256 = "3ba3b309425b7ff5e8e0199edceed95226250f880c53b24e8eae93865f3fad5e"
PATTERN = 0xA5


def sha256_file(path: Path, start: int = 0) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(start)
        while chunk := f.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_image(image: blockfmt.Image, length: int | None = None) -> str:
    digest = hashlib.sha256()
    end = image.size if length is None else length
    buf = memoryview(bytearray(16 * MiB))
    for offset in range(0, end, len(buf)):
        view = buf[: min(len(buf), end - offset)]
        image.readinto_at(offset, view)
        digest.update(view)
    return digest.hexdigest()


def qemu_replay(qemu_img: str, path: Path) -> None:
    result = run_tool([qemu_img, "check", "-r", "all", "-f", "vhdx", str(path)])
    assert result.returncode == 0, result.output
    assert "No errors were found on the image." in result.output


def qemu_head(qemu_img: str, path: Path, tmp_path: Path, length: int) -> bytes:
    """The first *length* bytes of the virtual disk as qemu-img reads them."""
    raw = tmp_path / f"{path.name}.head.raw"
    result = run_tool(
        [
            qemu_img,
            "dd",
            "-f",
            "vhdx",
            "-O",
            "raw",
            "bs=1M",
            f"count={length // MiB}",
            f"if={path}",
            f"of={raw}",
        ]
    )
    assert result.returncode == 0, result.output
    return raw.read_bytes()


def test_read_only_open_of_dirty_log_is_refused_with_qemus_message(sample_image):
    path = sample_image(DIRTY_070)
    before = sha256_file(path)
    with pytest.raises(LogReplayRequiredError) as info:
        blockfmt.open(path, read_only=True)
    assert info.value.message == (
        f"VHDX image file '{path}' opened read-only, but contains a log that needs to be replayed"
    )
    assert info.value.hint == f"To replay the log, run:\nqemu-img check -r all '{path}'"
    assert sha256_file(path) == before


def test_log_guid_ignored_shows_the_stale_mib(sample_image):
    """NOTES #1: what dissect/pyvhdi return. Without the log the 18th MiB is not the pattern."""
    path = sample_image(DIRTY_070)
    set_log_guid(path, None)
    with blockfmt.open(path) as image:
        data = image.read_at(0, 18 * MiB)
    assert data[: 17 * MiB] == bytes([PATTERN]) * (17 * MiB)
    assert data[17 * MiB :] == bytes(MiB)


def test_070_read_write_open_replays_and_reads_the_pattern(sample_image):
    path = sample_image(DIRTY_070)
    with blockfmt.open(path, read_only=False) as image:
        assert image.read_at(0, 18 * MiB) == bytes([PATTERN]) * (18 * MiB)
    assert current_header(path).log_guid.int == 0
    with blockfmt.open(path, read_only=True) as image:
        assert image.read_at(17 * MiB, MiB) == bytes([PATTERN]) * MiB


def test_070_memory_replay_reads_the_pattern_and_leaves_the_file_alone(sample_image):
    path = sample_image(DIRTY_070)
    before = sha256_file(path)
    with blockfmt.open(path, read_only=True, options={"log_replay": "memory"}) as image:
        assert image.read_at(0, 18 * MiB) == bytes([PATTERN]) * (18 * MiB)
    assert sha256_file(path) == before


@pytest.mark.qemu
def test_070_replay_matches_qemu_img_check_repair(sample_image, qemu_img, tmp_path):
    """Same virtual content (first 20 MiB) and the same file after the header section as QEMU's replay."""
    ours = sample_image(DIRTY_070)
    theirs = tmp_path / "qemu.vhdx"
    shutil.copyfile(ours, theirs)
    with blockfmt.open(ours, read_only=False) as image:
        head = image.read_at(0, 20 * MiB)
    qemu_replay(qemu_img, theirs)
    assert (
        hashlib.sha256(head).hexdigest()
        == hashlib.sha256(qemu_head(qemu_img, theirs, tmp_path, 20 * MiB)).hexdigest()
    )
    assert ours.stat().st_size == theirs.stat().st_size
    assert sha256_file(ours, MiB) == sha256_file(theirs, MiB)
    # and QEMU reads our replayed file as it reads its own
    assert qemu_head(qemu_img, ours, tmp_path, 20 * MiB) == head


def test_hyperv_active_sequence_starts_at_the_heads_tail(sample_image):
    """Hyper-V wrote 5 entries; the newest one's Tail points at the 4th: 2 are replayed (MS-VHDX §2.3.3)."""
    path = sample_image(HYPERV)
    header = current_header(path)
    file = OsImageFile(str(path), read_only=True)
    try:
        sequence = find_log_sequence(file, header.log_offset, header.log_length, header.log_guid)
    finally:
        file.close()
    assert sequence is not None
    assert [entry.position for entry in sequence.entries] == [20480, 28672]
    assert [w.file_offset for w in sequence.writes()] == [0x300000, 0x300000]
    assert sequence.last_file_offset == 37748736


def test_hyperv_log_replayed_in_memory_gives_the_documented_content(sample_image):
    path = sample_image(HYPERV)
    before = sha256_file(path)
    with blockfmt.open(path, read_only=True, options={"log_replay": "memory"}) as image:
        assert sha256_image(image) == HYPERV_SHA256
    assert sha256_file(path) == before


@pytest.mark.qemu
def test_hyperv_log_replayed_in_place_matches_qemu(sample_image, qemu_img, tmp_path):
    ours = sample_image(HYPERV)
    theirs = tmp_path / "qemu.vhdx"
    shutil.copyfile(ours, theirs)
    with blockfmt.open(ours, read_only=False) as image:
        assert sha256_image(image) == HYPERV_SHA256
    qemu_replay(qemu_img, theirs)
    assert sha256_file(ours, MiB) == sha256_file(theirs, MiB)
    result = run_tool([qemu_img, "check", "-f", "vhdx", str(ours)])
    assert result.returncode == 0 and "No errors were found on the image." in result.output
