"""Read path: QEMU's and Hyper-V's sample images, the log at open, open options."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import (
    BackingChainError,
    InvalidOptionError,
    LogReplayRequiredError,
)

MiB = 1 << 20


_CHUNK = 8 * MiB


def _sha256(img: blockfmt.Image) -> str:
    digest = hashlib.sha256()
    buf = bytearray(_CHUNK)
    for offset in range(0, img.size, _CHUNK):
        view = memoryview(buf)[: min(_CHUNK, img.size - offset)]
        img.readinto_at(offset, view)
        digest.update(view)
    return digest.hexdigest()


def _filled(img: blockfmt.Image, offset: int, length: int, byte: int) -> bool:
    """True when ``[offset, offset + length)`` holds only *byte* (read in chunks into one buffer)."""
    buf, expected = bytearray(_CHUNK), bytes([byte]) * _CHUNK
    for pos in range(offset, offset + length, _CHUNK):
        n = min(_CHUNK, offset + length - pos)
        img.readinto_at(pos, memoryview(buf)[:n])
        if memoryview(buf)[:n] != memoryview(expected)[:n]:
            return False
    return True


def test_iotest_064_reads(sample_image) -> None:
    """064: 0xa5 in 0-33 MiB, 0x96 in 33-66 MiB, zeros to 1 GiB, on Hyper-V's 1 GiB dynamic image."""
    with blockfmt.open(sample_image("iotest-dynamic-1G.vhdx")) as img:
        assert img.size == 1 << 30
        assert _filled(img, 0, 33 * MiB, 0xA5)
        assert _filled(img, 33 * MiB, 33 * MiB, 0x96)
        assert _filled(img, 66 * MiB, (1 << 30) - 66 * MiB, 0)
        # one unaligned read across the 0xa5/0x96 border and a 32 MiB block border
        assert img.read_at(33 * MiB - 3, 7) == b"\xa5" * 3 + b"\x96" * 4


def test_iotest_064_write_then_reads(sample_image) -> None:
    """064's write part through the API: 0xc3 at 99 MiB for 58 MiB, then every read of the test."""
    path = sample_image("iotest-dynamic-1G.vhdx")
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(99 * MiB, b"\xc3" * (58 * MiB))
    with blockfmt.open(path) as img:
        assert _filled(img, 0, 33 * MiB, 0xA5)
        assert _filled(img, 33 * MiB, 33 * MiB, 0x96)
        assert _filled(img, 66 * MiB, 33 * MiB, 0)
        assert _filled(img, 157 * MiB, 99 * MiB, 0)
        assert _filled(img, 99 * MiB, 58 * MiB, 0xC3)
        assert _filled(img, 256 * MiB, 768 * MiB, 0)


@pytest.mark.qemu
def test_iotest_064_write_is_read_by_qemu(sample_image, qemu_io, qemu_img) -> None:
    """After blockfmt's 064 write, qemu-io verifies the patterns and qemu-img check is clean."""
    from blockfmt.testing.qemu import run_tool

    path = sample_image("iotest-dynamic-1G.vhdx")
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(99 * MiB, b"\xc3" * (58 * MiB))
    run = run_tool(
        [
            qemu_io,
            "-r",
            "-c",
            "read -P 0xa5 0 33M",
            "-c",
            "read -P 0 66M 33M",
            "-c",
            "read -P 0xc3 99M 58M",
            "-c",
            "read -P 0 157M 99M",
            str(path),
        ]
    )
    assert run.returncode == 0 and "Pattern verification failed" not in run.output, run.output
    check = run_tool([qemu_img, "check", str(path)])
    assert check.returncode == 0 and "No errors were found on the image." in check.stdout


def test_discutils_btrfs_reads_to_known_sha256(sample_image) -> None:
    """A real Hyper-V image (512/4096 sectors, 32 MiB blocks, ZERO and NOT_PRESENT entries)."""
    with blockfmt.open(sample_image("discutils-btrfs.vhdx")) as img:
        assert _sha256(img) == "0b959f9cb4e18348ad8b646f152178282542c8304f02fddf765e3fd1a1de6864"
        extents = img.map()
        assert sum(e.length for e in extents if e.data) == 2 * 32 * MiB


def test_disk2vhd_image_opens(sample_image) -> None:
    """070's last part: Disk2VHD writes two identical headers with equal sequence numbers."""
    with blockfmt.open(sample_image("test-disk2vhd.vhdx")) as img:
        assert img.size == 256 * MiB
        assert img.info().cluster_size == 2 * MiB


def test_read_only_open_with_dirty_log_refuses_with_qemu_message(dirtylog: Path) -> None:
    """070: a read-only open refuses with QEMU's exact message and hint."""
    with pytest.raises(LogReplayRequiredError) as info:
        blockfmt.open(dirtylog)
    name = str(dirtylog)
    assert info.value.message == (
        f"VHDX image file '{name}' opened read-only, but contains a log that needs to be replayed"
    )
    assert info.value.hint == f"To replay the log, run:\nqemu-img check -r all '{name}'"


def test_read_only_open_can_replay_into_memory(dirtylog: Path) -> None:
    """``log_replay=memory`` serves post-replay bytes and leaves the file untouched (NOTES.md #1)."""
    before = dirtylog.read_bytes()
    with blockfmt.open(dirtylog, options={"log_replay": "memory"}) as img:
        assert _filled(img, 0, 18 * MiB, 0xA5)
    assert dirtylog.read_bytes() == before


def test_read_write_open_replays_log_and_check_counts_it(dirtylog: Path) -> None:
    """070: a read-write open replays; check reports one corruption fixed; the log is then clear."""
    with blockfmt.open(dirtylog, read_only=False) as img:
        assert _filled(img, 0, 18 * MiB, 0xA5)
        result = img.check("all")
        assert (result.corruptions, result.corruptions_fixed) == (0, 1)
    with blockfmt.open(dirtylog) as img:
        assert _filled(img, 0, 18 * MiB, 0xA5)
        assert img.check().corruptions_fixed == 0


def test_log_replay_discutils(sample_image) -> None:
    """The DiscUtils image whose whole BAT lives in the log reads to qemu's post-replay sha256."""
    path = sample_image("discutils-vhdx-log-replay.vhdx")
    with blockfmt.open(path, options={"log_replay": "memory"}) as img:
        assert _sha256(img) == "3ba3b309425b7ff5e8e0199edceed95226250f880c53b24e8eae93865f3fad5e"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bogus": 1}, "Invalid parameter 'bogus'"),
        ({"log_replay": "disk"}, "Parameter 'log_replay' expects 'memory'"),
    ],
)
def test_open_options_are_checked(sample_image, options: dict, message: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        blockfmt.open(sample_image("iotest-dynamic-1G.vhdx"), options=options)
    assert str(info.value) == message


def test_probe_recognises_vhdx(sample_image) -> None:
    assert blockfmt.probe(sample_image("iotest-dynamic-1G.vhdx")) == "vhdx"


def test_differencing_image_without_its_parent_names_the_path_tried(tmp_path: Path) -> None:
    """HasParent: the locator's relative path is resolved from the child's directory; a missing
    parent is one BackingChainError naming the path tried (it used to be UnsupportedFeatureError)."""
    from .builders import make_differencing

    (tmp_path / "dir").mkdir()
    path = make_differencing(tmp_path / "dir" / "child.vhdx")
    with pytest.raises(BackingChainError) as info:
        blockfmt.open(path)
    assert str(info.value) == (
        f"Could not open backing file: Could not open '{tmp_path / 'parent.vhdx'}': No such file or directory"
    )
    with blockfmt.open(path, open_backing=False) as img:  # alone, the parent's ranges read as zeros
        assert img.read_at(0, 4096) == bytes(4096)
