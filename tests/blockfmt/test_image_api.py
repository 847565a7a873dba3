"""The public API seen from a caller: Image as a file object, and errors only from the blockfmt tree."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import (
    BlockFormatError,
    BlockIOError,
    CorruptImageError,
    InvalidOptionError,
    OutOfRangeError,
    ReadOnlyError,
    UnsupportedFeatureError,
    UnsupportedFormatError,
    UnsupportedOperationError,
)

SIZE = 3 << 20


@pytest.fixture
def raw_image(tmp_path: Path) -> Path:
    """A 3 MiB raw image whose every byte is its offset modulo 251."""
    path = tmp_path / "disk.raw"
    path.write_bytes(bytes(i % 251 for i in range(251)) * (SIZE // 251) + bytes(SIZE % 251))
    return path


def test_image_copies_with_shutil(raw_image: Path, tmp_path: Path) -> None:
    """shutil.copyfileobj reads the whole virtual disk through readinto."""
    target = tmp_path / "copy.bin"
    with blockfmt.open(raw_image) as image, target.open("wb") as out:
        shutil.copyfileobj(image, out, 1 << 20)
    assert target.read_bytes() == raw_image.read_bytes()


def test_seek_tell_and_buffered_reader(raw_image: Path) -> None:
    """Seek from start, current and end; BufferedReader and read() at the end behave like a file."""
    expected = raw_image.read_bytes()
    with blockfmt.open(raw_image) as image:
        assert image.seekable() and image.readable() and not image.writable()
        assert image.seek(1000) == 1000
        assert image.read(10) == expected[1000:1010]
        assert image.tell() == 1010
        assert image.seek(-5, io.SEEK_CUR) == 1005
        assert image.seek(-3, io.SEEK_END) == SIZE - 3
        assert image.read(100) == expected[-3:]
        assert image.read(100) == b""
        image.seek(0)
        reader = io.BufferedReader(image, 4096)
        assert reader.read(5000) == expected[:5000]
        reader.seek(SIZE - 10)
        assert reader.read() == expected[-10:]


def test_write_through_the_stream_interface(raw_image: Path) -> None:
    """write() advances the position and lands at the right virtual offset."""
    with blockfmt.open(raw_image, read_only=False) as image:
        image.seek(4096)
        assert image.write(b"abc") == 3
        assert image.tell() == 4099
    assert raw_image.read_bytes()[4096:4099] == b"abc"


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (lambda p: blockfmt.open(p.parent / "missing.raw"), BlockIOError),
        (lambda p: blockfmt.open(p, "nope"), UnsupportedFormatError),
        (lambda p: blockfmt.open(p, "vhdx"), CorruptImageError),
        (lambda p: blockfmt.open(p, "vdi"), UnsupportedFeatureError),
        (lambda p: blockfmt.open(p).read_at(SIZE - 1, 2), OutOfRangeError),
        (lambda p: blockfmt.open(p).read_at(-1, 1), OutOfRangeError),
        (lambda p: blockfmt.open(p).write_at(0, b"x"), ReadOnlyError),
        (lambda p: blockfmt.open(p).check(), UnsupportedOperationError),
        (lambda p: blockfmt.open(p).check("all"), ReadOnlyError),
        (lambda p: blockfmt.open(p, options={"nope": 1}), InvalidOptionError),
        (lambda p: blockfmt.create(p.parent / "n.raw", "raw", -1), InvalidOptionError),
        (lambda p: blockfmt.create(p.parent / "n.raw", "raw", 1, nope=1), InvalidOptionError),
        (lambda p: blockfmt.create(p.parent / "n.raw", "nope", 1), UnsupportedFormatError),
        (lambda p: blockfmt.create(p.parent / "no" / "n.raw", "raw", 1), BlockIOError),
        (
            lambda p: blockfmt.create(p.parent / "n.vhdx", "vhdx", 1 << 30, block_size="3M"),
            InvalidOptionError,
        ),
        (lambda p: blockfmt.create(p.parent / "n.vdi", "vdi", 1 << 20, static="maybe"), InvalidOptionError),
    ],
)
def test_errors_cross_the_api_as_blockformaterror(
    raw_image: Path, action, error: type[BlockFormatError]
) -> None:
    """Every failure is the documented BlockFormatError subclass, never a bare Python exception."""
    with pytest.raises(error) as info:
        action(raw_image)
    assert isinstance(info.value, BlockFormatError)
    assert info.value.message


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("raw", {"nope": "1"}),
        ("vhdx", {"block_size": "3M"}),
        ("vdi", {"static": "2"}),
        ("vhdx", {"log_size": "x"}),
    ],
)
def test_failed_create_leaves_existing_file_untouched(
    raw_image: Path, fmt: str, options: dict[str, str]
) -> None:
    """A create that fails on an option does not touch the file already at the path."""
    before = raw_image.read_bytes()
    with pytest.raises(InvalidOptionError):
        blockfmt.create(raw_image, fmt, 1 << 30, **options)
    assert raw_image.read_bytes() == before
    assert sorted(p.name for p in raw_image.parent.iterdir()) == ["disk.raw"]


def test_create_takes_options_typed_once(tmp_path: Path) -> None:
    """Options typed by coerce_create_options are used as they are: the image gets exactly them."""
    from blockfmt.options import coerce_create_options

    host = blockfmt.default_host()
    typed = coerce_create_options(host.spec("vhdx"), {"block_size": "16M", "subformat": "fixed"})
    path = tmp_path / "typed.vhdx"
    blockfmt.create(path, "vhdx", 64 << 20, typed)
    with blockfmt.open(path) as image:
        info = image.info()
    assert (info.cluster_size, info.format_specific["subformat"]) == (16 << 20, "fixed")
    with pytest.raises(TypeError, match="not both"):
        blockfmt.create(tmp_path / "both.vhdx", "vhdx", 64 << 20, typed, block_size="1M")
    assert not (tmp_path / "both.vhdx").exists()
