"""LogWriter: entries in QEMU's layout, partial sectors, splitting, wrap-around, atomic transactions."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import blockfmt
from blockfmt.fileio import OsImageFile
from blockfmt.testing.faults import FaultInjectingFile, LoseUnflushed, PowerCut
from blockfmt_vhdx.constants import LOG_SECTOR_SIZE
from blockfmt_vhdx.log import LogWriter, find_log_sequence, replay_log

from .headers import current_header, set_log_guid

MiB = 1 << 20
#: unused space after the region tables: a safe target for metadata-like updates
AREA = 320 * 1024
AREA_END = MiB


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "writer.vhdx"
    blockfmt.create(path, "vhdx", 40 * MiB, block_size=MiB)
    with open(path, "r+b") as f:
        f.seek(AREA)
        f.write(bytes(range(256)) * ((AREA_END - AREA) // 256))
    return path


class Recorder:
    """The core's set_log_guid callback, recorded and applied to the headers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[uuid.UUID | None] = []

    def __call__(self, guid: uuid.UUID | None) -> None:
        self.calls.append(guid)
        set_log_guid(self.path, guid)


def open_writer(path: Path, file=None) -> tuple[LogWriter, Recorder, OsImageFile]:
    header = current_header(path)
    inner = OsImageFile(str(path), read_only=False)
    recorder = Recorder(path)
    return LogWriter(file or inner, header.log_offset, header.log_length, recorder), recorder, inner


def active(path: Path):
    header = current_header(path)
    file = OsImageFile(str(path), read_only=True)
    try:
        return find_log_sequence(file, header.log_offset, header.log_length, header.log_guid)
    finally:
        file.close()


def test_transaction_sets_the_guid_first_lands_in_place_and_stays_replayable(image):
    before = image.read_bytes()
    writer, recorder, inner = open_writer(image)
    writer.write_transaction([(AREA + 100, b"hello"), (AREA + 3 * LOG_SECTOR_SIZE, b"x" * 10)])
    guid = current_header(image).log_guid
    assert recorder.calls == [guid] and guid.int != 0
    after = image.read_bytes()
    expected = bytearray(before)
    expected[AREA + 100 : AREA + 105] = b"hello"
    expected[AREA + 3 * LOG_SECTOR_SIZE : AREA + 3 * LOG_SECTOR_SIZE + 10] = b"x" * 10
    assert after[MiB + MiB :] == bytes(expected[2 * MiB :])
    assert after[AREA:AREA_END] == bytes(expected[AREA:AREA_END])
    sequence = active(image)
    third = AREA + 3 * LOG_SECTOR_SIZE
    assert sequence is not None and len(sequence.entries) == 1
    assert [(w.file_offset, w.data) for w in sequence.writes()] == [
        (AREA, bytes(expected[AREA : AREA + LOG_SECTOR_SIZE])),
        (third, bytes(expected[third : third + LOG_SECTOR_SIZE])),
    ]
    writer.close()
    inner.close()
    assert recorder.calls == [guid, None] and current_header(image).log_guid.int == 0


def test_updates_sharing_a_sector_keep_their_neighbours(image):
    """NOTES #4 (QEMU issue #727): the partial tail sector must come from the right offset."""
    original = image.read_bytes()[AREA : AREA + LOG_SECTOR_SIZE]
    writer, _, inner = open_writer(image)
    writer.write_transaction([(AREA, b"\xff" * 8)])
    writer.write_transaction([(AREA + LOG_SECTOR_SIZE - 8, b"\xee" * 8)])
    writer.write_transaction([(AREA + 2 * LOG_SECTOR_SIZE - 4, b"\xdd" * 8)])
    inner.close()
    sector = image.read_bytes()[AREA : AREA + 2 * LOG_SECTOR_SIZE]
    assert sector[:8] == b"\xff" * 8
    assert sector[8 : LOG_SECTOR_SIZE - 8] == original[8 : LOG_SECTOR_SIZE - 8]
    assert sector[LOG_SECTOR_SIZE - 8 : LOG_SECTOR_SIZE] == b"\xee" * 8
    assert sector[-4:] == b"\xdd" * 4


def test_large_transaction_is_split_into_entries_that_fit_half_the_log(image):
    writer, recorder, inner = open_writer(image)
    data = bytes(range(200)) * (300 * LOG_SECTOR_SIZE // 200)
    writer.write_transaction([(2 * MiB + 10 * MiB, data)])
    inner.close()
    assert len(recorder.calls) == 1
    with open(image, "rb") as f:
        f.seek(12 * MiB)
        assert f.read(len(data)) == data
    sequence = active(image)
    assert sequence is not None
    assert sequence.head.header.entry_length <= current_header(image).log_length // 2


def test_log_wraps_and_the_newest_entry_stays_the_active_sequence(image):
    writer, recorder, inner = open_writer(image)
    log_length = current_header(image).log_length
    positions = set()
    for index in range(140):
        offset = AREA + (index % 100) * 8
        writer.write_transaction([(offset, index.to_bytes(8, "little"))] * (1 + index % 3))
        sequence = active(image)
        assert sequence is not None and len(sequence.entries) == 1
        assert sequence.head.header.sequence_number == index + 1
        positions.add(sequence.head.position)
    inner.close()
    assert len(recorder.calls) == 1
    assert min(positions) == 0 and max(positions) > log_length - 4 * LOG_SECTOR_SIZE


def transactions() -> list[list[tuple[int, bytes]]]:
    return [[(AREA + 4096 * (i % 50) + 16 * i, bytes([i]) * (1 + 700 * (i % 9)))] for i in range(1, 9)]


def state_after(base: bytes, count: int) -> bytes:
    disk = bytearray(base)
    for transaction in transactions()[:count]:
        for offset, data in transaction:
            disk[offset : offset + len(data)] = data
    return bytes(disk[AREA:AREA_END])


@pytest.mark.parametrize("lose", list(LoseUnflushed))
def test_every_cut_leaves_whole_transactions_after_replay(image, tmp_path, lose):
    """Cut the writer after each of its writes and flushes: after replay the area holds the state
    after exactly the transactions finished, or after the one in flight too, never a mix."""
    base = image.read_bytes()
    probe = FaultInjectingFile(OsImageFile(str(image), read_only=False))
    writer, _, inner = open_writer(image, probe)
    for transaction in transactions():
        writer.write_transaction(transaction)
    inner.close()
    total = probe.operations
    for cut in range(total):
        path = tmp_path / "cut.vhdx"
        path.write_bytes(base)
        faulty = FaultInjectingFile(
            OsImageFile(str(path), read_only=False), cut_after=cut, lose=lose, seed=cut
        )
        writer, _, inner = open_writer(path, faulty)
        done = 0
        with pytest.raises(PowerCut):
            for transaction in transactions():
                writer.write_transaction(transaction)
                done += 1
        sequence = active(path)
        if sequence is not None:
            replay_log(inner, sequence)
        inner.close()
        area = path.read_bytes()[AREA:AREA_END]
        assert area in (state_after(base, done), state_after(base, done + 1)), f"cut {cut}"
