"""FaultInjectingFile: counting, the cut, and the durable-state model behind the loss policies."""

from __future__ import annotations

import pytest

from blockfmt.errors import BlockFormatError
from blockfmt.fileio import OsImageFile
from blockfmt.testing.faults import FaultInjectingFile, IoEvent, LoseUnflushed, PowerCut


@pytest.fixture
def path(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"A" * 8192)
    return target


def wrap(path, **kwargs) -> tuple[FaultInjectingFile, OsImageFile]:
    inner = OsImageFile(str(path), read_only=False)
    return FaultInjectingFile(inner, **kwargs), inner


def test_power_cut_is_not_a_library_error():
    assert not issubclass(PowerCut, BlockFormatError | OSError)


def test_cut_after_n_operations_refuses_the_next_and_everything_after(path):
    faulty, inner = wrap(path, cut_after=2)
    faulty.pwrite(b"B", 0)
    faulty.flush()
    with pytest.raises(PowerCut):
        faulty.pwrite(b"C", 1)
    with pytest.raises(PowerCut):
        faulty.pread(1, 0)
    inner.close()
    assert faulty.events == [IoEvent("write", 0, 1), IoEvent("flush")]
    assert path.read_bytes()[:2] == b"BA"


def test_lose_all_takes_back_every_unflushed_change_exactly(path):
    faulty, inner = wrap(path, lose=LoseUnflushed.ALL)
    faulty.pwrite(b"B" * 100, 10)
    faulty.flush()
    faulty.pwrite(b"C" * 100, 50)
    faulty.pwrite(b"D" * 10, 8190)  # grows the file
    faulty.truncate(4096)  # shrinks it
    faulty.truncate(20000)
    faulty.punch_hole(0, 4096)
    faulty.power_cut()
    inner.close()
    assert path.read_bytes() == b"A" * 10 + b"B" * 100 + b"A" * (8192 - 110)


def test_lose_none_keeps_unflushed_changes(path):
    faulty, inner = wrap(path, cut_after=1, lose=LoseUnflushed.NONE)
    faulty.pwrite(b"B", 0)
    with pytest.raises(PowerCut):
        faulty.flush()
    inner.close()
    assert path.read_bytes()[:1] == b"B"


def test_lose_some_keeps_a_seeded_subset_in_order(path):
    outcomes = set()
    for seed in range(16):
        path.write_bytes(b"A" * 8192)
        faulty, inner = wrap(path, lose=LoseUnflushed.SOME, seed=seed)
        for index in range(4):
            faulty.pwrite(bytes([ord("a") + index]), index)
        faulty.power_cut()
        inner.close()
        head = path.read_bytes()[:4]
        assert all(head[i] in (ord("A"), ord("a") + i) for i in range(4))
        outcomes.add(head)
    assert len(outcomes) > 4
