"""blockfmt's own image locks: the bytes taken, conflicts between two blockfmt opens, release."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import ImageLockedError, InvalidOptionError
from blockfmt.host import Host
from blockfmt.locking import CREATE_LOCK, ImageLock, Permission, open_lock_request

from .conftest import STAND_IN_FORMAT, lock_bytes

OFD = "OFDLCK"


@pytest.fixture
def image(tmp_path: Path, host: Host) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(b"\xa5" * 4096)
    return path


@pytest.mark.parametrize(
    ("format", "read_only", "force_share", "expected"),
    [
        # measured with /proc/locks against qemu-io / qemu-storage-daemon 7.2
        (
            "vdi",
            False,
            False,
            [(OFD, 100, 100), (OFD, 101, 101), (OFD, 103, 103), (OFD, 201, 201), (OFD, 203, 203)],
        ),
        ("vdi", True, False, [(OFD, 100, 100), (OFD, 201, 201), (OFD, 203, 203)]),
        ("vdi", True, True, [(OFD, 100, 100)]),
        ("raw", False, False, [(OFD, 100, 100), (OFD, 101, 101)]),
        ("raw", True, False, [(OFD, 100, 100)]),
    ],
)
def test_open_takes_qemus_lock_bytes(
    image: Path, host: Host, format: str, read_only: bool, force_share: bool, expected: list
) -> None:
    with blockfmt.open(image, format, read_only, force_share=force_share, host=host):
        assert _merged_singles(lock_bytes(image)) == expected
    assert lock_bytes(image) == []


def _merged_singles(locks: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Split ranges into single bytes (the kernel merges neighbouring locks of one description)."""
    return [(kind, b, b) for kind, first, last in locks for b in range(first, last + 1)]


def test_create_lock_is_raw_co_create() -> None:
    assert CREATE_LOCK.perm == Permission.WRITE | Permission.RESIZE
    assert CREATE_LOCK.shared == Permission.CONSISTENT_READ | Permission.WRITE | Permission.WRITE_UNCHANGED


def test_force_share_refuses_write_with_qemus_message(image: Path, host: Host) -> None:
    with pytest.raises(InvalidOptionError) as info:
        blockfmt.open(image, STAND_IN_FORMAT, read_only=False, force_share=True, host=host)
    assert str(info.value) == "force-share=on can only be used with read-only images"
    assert lock_bytes(image) == []


def test_second_writer_is_refused(image: Path, host: Host) -> None:
    with blockfmt.open(image, STAND_IN_FORMAT, read_only=False, host=host):
        with pytest.raises(ImageLockedError) as info:
            blockfmt.open(image, STAND_IN_FORMAT, read_only=False, host=host)
    assert str(info.value) == 'Failed to get "write" lock'
    assert info.value.hint == f"Is another process using the image [{image}]?"


def test_reader_is_refused_while_writer_holds(image: Path, host: Host) -> None:
    with blockfmt.open(image, STAND_IN_FORMAT, read_only=False, host=host):
        with pytest.raises(ImageLockedError, match=r'^Failed to get shared "write" lock$'):
            blockfmt.open(image, STAND_IN_FORMAT, host=host)


def test_writer_is_refused_while_reader_holds(image: Path, host: Host) -> None:
    with blockfmt.open(image, STAND_IN_FORMAT, host=host):
        with pytest.raises(ImageLockedError, match=r'^Failed to get "write" lock$'):
            blockfmt.open(image, STAND_IN_FORMAT, read_only=False, host=host)


def test_readers_share(image: Path, host: Host) -> None:
    with (
        blockfmt.open(image, STAND_IN_FORMAT, host=host) as a,
        blockfmt.open(image, STAND_IN_FORMAT, host=host) as b,
    ):
        assert a.read_at(0, 4) == b.read_at(0, 4) == b"\xa5" * 4


def test_force_share_reads_while_writer_holds(image: Path, host: Host) -> None:
    with blockfmt.open(image, STAND_IN_FORMAT, read_only=False, host=host) as writer:
        writer.write_at(0, b"new!")
        writer.flush()
        with blockfmt.open(image, STAND_IN_FORMAT, force_share=True, host=host) as reader:
            assert reader.read_at(0, 4) == b"new!"


def test_raw_writers_share_like_qemu(image: Path, host: Host) -> None:
    """QEMU's raw format has no metadata, so it does not unshare write (qemu-io can open it twice)."""
    with (
        blockfmt.open(image, "raw", read_only=False, host=host),
        blockfmt.open(image, "raw", read_only=False, host=host),
    ):
        pass


def test_close_releases_the_locks(image: Path, host: Host) -> None:
    blockfmt.open(image, STAND_IN_FORMAT, read_only=False, host=host).close()
    with blockfmt.open(image, STAND_IN_FORMAT, read_only=False, host=host):
        pass


def test_refused_open_keeps_no_lock(image: Path, host: Host) -> None:
    with blockfmt.open(image, STAND_IN_FORMAT, host=host):
        held = lock_bytes(image)
        with pytest.raises(ImageLockedError):
            blockfmt.open(image, STAND_IN_FORMAT, read_only=False, host=host)
        assert lock_bytes(image) == held


def test_failed_acquire_releases_what_it_took(image: Path) -> None:
    """The rollback is per lock object: the same fd can still take a compatible request afterwards."""
    holder = os.open(image, os.O_RDONLY)
    other = os.open(image, os.O_RDWR)
    try:
        ImageLock(holder, str(image)).acquire(
            open_lock_request(data_only=False, read_only=True, force_share=False)
        )
        before = lock_bytes(image)
        lock = ImageLock(other, str(image))
        with pytest.raises(ImageLockedError):
            lock.acquire(open_lock_request(data_only=False, read_only=False, force_share=False))
        assert lock_bytes(image) == before
        lock.acquire(open_lock_request(data_only=False, read_only=True, force_share=True))
    finally:
        os.close(holder)
        os.close(other)
    assert lock_bytes(image) == []


def test_create_refuses_to_replace_an_image_in_use(image: Path, host: Host) -> None:
    with blockfmt.open(image, STAND_IN_FORMAT, host=host):
        with pytest.raises(ImageLockedError, match=r'^Failed to get "write" lock$'):
            blockfmt.create(image, STAND_IN_FORMAT, 1 << 20, host=host)
    assert image.read_bytes() == b"\xa5" * 4096
    assert [p.name for p in image.parent.iterdir()] == [image.name]


def test_create_replaces_an_unused_image(image: Path, host: Host) -> None:
    blockfmt.create(image, STAND_IN_FORMAT, 1 << 20, host=host)
    assert image.stat().st_size == 1 << 20
