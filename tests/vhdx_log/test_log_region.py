"""The log scanner's own check of where the log lies (the open path checks it earlier, in regions)."""

from __future__ import annotations

import uuid

import pytest

from blockfmt.errors import CorruptImageError
from blockfmt.testing.fuzz import RecordingFile, SparseBytes
from blockfmt_vhdx.log import find_log_sequence

MiB = 1 << 20


@pytest.mark.parametrize(("offset", "length"), [(0, MiB), (MiB + 4096, MiB), (MiB, MiB + 4096)])
def test_misplaced_log_is_corrupt(offset: int, length: int) -> None:
    file = RecordingFile(SparseBytes(8 * MiB), "log", read_only=True, growth=0, max_io=MiB)
    with pytest.raises(CorruptImageError, match="is not 1 MB aligned"):
        find_log_sequence(file, offset, length, uuid.uuid4())


def test_nil_guid_or_empty_log_holds_nothing() -> None:
    file = RecordingFile(SparseBytes(8 * MiB), "log", read_only=True, growth=0, max_io=MiB)
    assert find_log_sequence(file, MiB + 4096, MiB, uuid.UUID(int=0)) is None
    assert find_log_sequence(file, MiB, 0, uuid.uuid4()) is None
    assert find_log_sequence(file, MiB, MiB, uuid.uuid4()) is None  # a log of zeros: no entry
