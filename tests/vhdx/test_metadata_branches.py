"""Metadata and headers the suite and the fuzz corpus did not reach (issue 19, branch coverage): an
item listed twice, a differencing image without its parent locator, a truncated scalar item, two
headers with one sequence number, and a header whose sequence number cannot grow."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import CorruptImageError
from blockfmt_vhdx.constants import HEADER_OFFSETS, VIRTUAL_DISK_SIZE_GUID
from blockfmt_vhdx.headers import MAX_SEQUENCE_NUMBER
from blockfmt_vhdx.structs import Header

from .builders import standard_items, write_metadata

MiB = 1 << 20


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "m.vhdx"
    blockfmt.create(path, "vhdx", 8 * MiB, block_size=MiB)
    return path


def _open_fails(path: Path) -> str:
    with pytest.raises(CorruptImageError) as info:
        blockfmt.open(path, "vhdx")
    return str(info.value)


def test_an_item_listed_twice(image: Path) -> None:
    items = standard_items(8 * MiB, MiB)
    write_metadata(image, [*items, items[1]])
    assert _open_fails(image) == "VHDX metadata item virtual disk size appears twice"


def test_has_parent_without_a_parent_locator(image: Path) -> None:
    write_metadata(image, standard_items(8 * MiB, MiB, has_parent=True))
    assert _open_fails(image) == "VHDX differencing image (HasParent) has no parent locator"


def test_a_truncated_scalar_item(image: Path) -> None:
    items = [
        (guid, struct.pack("<I", 8 * MiB) if guid == VIRTUAL_DISK_SIZE_GUID else payload, required)
        for guid, payload, required in standard_items(8 * MiB, MiB)
    ]
    write_metadata(image, items)
    assert _open_fails(image) == "VHDX metadata item virtual disk size is truncated"


def _headers(path: Path) -> list[Header]:
    with open(path, "rb") as f:
        return [Header.parse(_read(f, offset)) for offset in HEADER_OFFSETS]


def _read(f, offset: int) -> bytes:  # type: ignore[no-untyped-def]
    f.seek(offset)
    return f.read(4096)


def _write_header(path: Path, offset: int, header: Header) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(header.pack())


def test_two_headers_with_one_sequence_number_must_be_identical(image: Path) -> None:
    first, second = _headers(image)
    _write_header(image, HEADER_OFFSETS[0], first.replace(sequence_number=second.sequence_number))
    with blockfmt.open(image) as img:  # identical copies (as Disk2VHD writes them): accepted
        assert img.size == 8 * MiB
    changed = second.replace(file_write_guid=uuid.UUID(int=1))
    _write_header(image, HEADER_OFFSETS[0], changed)
    assert _open_fails(image) == "No valid VHDX header found"


def test_a_header_at_the_last_sequence_number_is_not_updated(image: Path) -> None:
    second = _headers(image)[1]
    last = second.replace(sequence_number=MAX_SEQUENCE_NUMBER)
    _write_header(image, HEADER_OFFSETS[1], last)
    before = image.read_bytes()
    with pytest.raises(
        CorruptImageError, match=f"sequence number {MAX_SEQUENCE_NUMBER} cannot be incremented"
    ):
        with blockfmt.open(image, read_only=False) as img:
            img.write_at(0, b"x")
    assert image.read_bytes() == before
