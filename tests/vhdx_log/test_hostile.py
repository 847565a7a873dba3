"""Hostile and broken logs: ignored where the spec says an entry is invalid, rejected where a replay
would write outside the file's metadata area; never a write outside the legitimate range."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import CorruptImageError
from blockfmt.fileio import OsImageFile
from blockfmt.host import default_host
from blockfmt.testing.faults import FaultInjectingFile
from blockfmt_vhdx.checksum import stamp_checksum
from blockfmt_vhdx.constants import CHECKSUM_OFFSET, HEADERS_END, LOG_SECTOR_SIZE
from blockfmt_vhdx.log import find_log_sequence

from .entries import build_entry, put_in_log
from .headers import HEADER_OFFSETS, HEADER_SIZE, current_header, set_log_guid

MiB = 1 << 20
GUID = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
#: an unused 4 KiB of the header section (after the region tables), safe to target
TARGET = 512 * 1024
OLD, NEW = b"\x0a" * LOG_SECTOR_SIZE, b"\x0b" * LOG_SECTOR_SIZE


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "hostile.vhdx"
    blockfmt.create(path, "vhdx", 40 * MiB, block_size=MiB)
    set_log_guid(path, GUID)
    with open(path, "r+b") as f:
        f.seek(TARGET)
        f.write(OLD)
    return path


def put(path: Path, position: int, entry: bytes) -> None:
    header = current_header(path)
    put_in_log(path, header.log_offset, header.log_length, position, entry)


def find(path: Path, guid: uuid.UUID = GUID):
    header = current_header(path)
    file = OsImageFile(str(path), read_only=True)
    try:
        return find_log_sequence(file, header.log_offset, header.log_length, guid)
    finally:
        file.close()


def open_faulty(path: Path) -> tuple[FaultInjectingFile, Exception | None]:
    """Open read-write over a recording file; return the recorder and the error, if any."""
    inner = OsImageFile(str(path), read_only=False)
    faulty = FaultInjectingFile(inner)
    error: Exception | None = None
    try:
        default_host().open_driver("vhdx", faulty, False, {}).close()
    except CorruptImageError as err:
        error = err
    finally:
        inner.close()
    return faulty, error


def writes_outside_headers(faulty: FaultInjectingFile) -> list:
    headers = [(offset, offset + HEADER_SIZE) for offset in HEADER_OFFSETS]
    return [
        e
        for e in faulty.events
        if e.kind != "flush" and not any(lo <= e.offset and e.offset + e.length <= hi for lo, hi in headers)
    ]


def entry(seq: int, position: int, changes, path: Path, **kwargs) -> bytearray:
    return build_entry(
        seq, position, kwargs.pop("guid", GUID), changes, file_size=path.stat().st_size, **kwargs
    )


def test_valid_entry_is_replayed_and_writes_only_its_sector(image):
    put(image, 0, entry(1, 0, [(TARGET, NEW)], image))
    faulty, error = open_faulty(image)
    assert error is None
    assert [(e.offset, e.length) for e in writes_outside_headers(faulty)] == [(TARGET, LOG_SECTOR_SIZE)]
    assert image.read_bytes()[TARGET : TARGET + LOG_SECTOR_SIZE] == NEW
    assert current_header(image).log_guid.int == 0


def test_entry_with_bad_checksum_is_ignored_and_the_previous_one_wins(image):
    put(image, 0, entry(1, 0, [(TARGET, NEW)], image))
    torn = entry(2, 8192, [(TARGET, b"\x0c" * LOG_SECTOR_SIZE)], image)
    torn[-1] ^= 0xFF
    put(image, 8192, torn)
    sequence = find(image)
    assert sequence is not None and [e.header.sequence_number for e in sequence.entries] == [1]
    assert next(sequence.writes()).data == NEW


def test_data_sector_with_wrong_sequence_half_is_ignored(image):
    bad = entry(3, 0, [(TARGET, NEW)], image)
    bad[LOG_SECTOR_SIZE + LOG_SECTOR_SIZE - 4] ^= 1  # SequenceLow of the data sector
    stamp_checksum(bad, CHECKSUM_OFFSET)
    put(image, 0, bad)
    assert find(image) is None


def test_entry_with_another_log_guid_is_ignored(image):
    put(image, 0, entry(1, 0, [(TARGET, NEW)], image, guid=uuid.uuid4()))
    assert find(image) is None
    faulty, error = open_faulty(image)
    assert error is None and writes_outside_headers(faulty) == []


def test_incomplete_sequence_is_not_replayed(image):
    """The head's Tail points at an entry that is gone: the sequence is not valid (MS-VHDX §2.3.3)."""
    put(image, 8192, entry(5, 0, [(TARGET, NEW)], image))
    assert find(image) is None


@pytest.mark.parametrize(
    ("target", "zero_length"),
    [
        (1 << 40, None),  # far beyond the file
        (64 * 1024, None),  # header 1
        (MiB + 64 * 1024, None),  # inside the log
        (TARGET, (1 << 64) - LOG_SECTOR_SIZE),  # a zero range as long as the address space
    ],
)
def test_writes_outside_the_metadata_area_are_rejected_without_writing(image, target, zero_length):
    change = (target, NEW) if zero_length is None else (target, zero_length)
    put(image, 0, entry(1, 0, [change], image))
    with pytest.raises(CorruptImageError, match="outside the file's metadata area"):
        find(image)
    faulty, error = open_faulty(image)
    assert isinstance(error, CorruptImageError)
    assert faulty.events == []


def test_absurd_last_file_offset_is_rejected(image):
    put(image, 0, entry(1, 0, [(TARGET, NEW)], image, last_file_offset=(1 << 64) - 1))
    with pytest.raises(CorruptImageError, match="invalid LastFileOffset"):
        find(image)


def test_truncated_file_is_refused_before_replay(image):
    put(image, 0, entry(1, 0, [(TARGET, NEW)], image, last_file_offset=0))
    sequence = find(image)
    assert sequence is not None
    grown = build_entry(1, 0, GUID, [(TARGET, NEW)], file_size=image.stat().st_size + MiB, last_file_offset=0)
    put(image, 0, grown)
    faulty, error = open_faulty(image)
    assert isinstance(error, CorruptImageError) and "truncated" in str(error)
    assert faulty.events == []


def test_huge_descriptor_count_is_ignored(image):
    put(image, 0, entry(1, 0, [(TARGET, NEW)], image, descriptor_count=2**32 - 1))
    assert find(image) is None


def test_entry_longer_than_the_log_is_ignored(image):
    put(image, 0, entry(1, 0, [(TARGET, NEW)], image, entry_length=2 * MiB))
    assert find(image) is None


def test_chains_that_never_reach_their_head_end(image):
    """Every slot holds an entry whose Tail points at the next slot, all with one sequence number."""
    log_length = current_header(image).log_length
    for position in range(0, log_length, LOG_SECTOR_SIZE):
        tail = (position + LOG_SECTOR_SIZE) % log_length
        put(image, position, entry(7, tail, [], image))
    started = time.monotonic()
    assert find(image) is None
    assert time.monotonic() - started < 10


def test_log_full_of_overlapping_entries_is_rejected_in_bounded_time(image):
    """Every slot starts a whole-log entry with a bad checksum: verifying all would cost 256 MiB."""
    log_length = current_header(image).log_length
    for position in range(0, log_length, LOG_SECTOR_SIZE):
        bad = entry(100 + position // LOG_SECTOR_SIZE, position, [], image, entry_length=log_length)
        bad[4] ^= 1
        put(image, position, bad[:LOG_SECTOR_SIZE])
    started = time.monotonic()
    with pytest.raises(CorruptImageError, match="too many overlapping log entries"):
        find(image)
    assert time.monotonic() - started < 10


def test_entry_wrapping_over_the_end_of_the_log_is_read_whole(image):
    log_length = current_header(image).log_length
    position = log_length - LOG_SECTOR_SIZE
    put(image, position, entry(9, position, [(TARGET, NEW), (TARGET + 2 * LOG_SECTOR_SIZE, NEW)], image))
    sequence = find(image)
    assert sequence is not None
    assert [(w.file_offset, w.data) for w in sequence.writes()] == [
        (TARGET, NEW),
        (TARGET + 2 * LOG_SECTOR_SIZE, NEW),
    ]


def test_headers_end_is_past_both_headers():
    assert HEADERS_END == max(HEADER_OFFSETS) + 64 * 1024
