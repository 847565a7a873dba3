"""blockfmt.compare: first differing offset, zero padding of the shorter image, status mismatches."""

from __future__ import annotations

from pathlib import Path

import pytest

import blockfmt
from blockfmt.compare import COMPARE_CHUNK, compare, first_status_mismatch


def _raw(path: Path, size: int, writes: dict[int, bytes]) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
        for offset, data in writes.items():
            f.seek(offset)
            f.write(data)
    return path


@pytest.mark.parametrize("where", [0, 1, 4095, COMPARE_CHUNK - 1, COMPARE_CHUNK, COMPARE_CHUNK + 12345])
def test_first_difference_is_exact(tmp_path: Path, where: int) -> None:
    """Differences inside data, at chunk edges and inside holes are found at their exact byte."""
    size = 2 * COMPARE_CHUNK
    a = _raw(tmp_path / "a", size, {0: b"\x01" * 8192, COMPARE_CHUNK - 4: b"\x02" * 8})
    b = _raw(tmp_path / "b", size, {0: b"\x01" * 8192, COMPARE_CHUNK - 4: b"\x02" * 8, where: b"\x7f"})
    with blockfmt.open(a, "raw") as ia, blockfmt.open(b, "raw") as ib:
        assert compare(ia, ia) is None
        assert compare(ia, ib) == where
        assert compare(ib, ia) == where


def test_shorter_image_reads_as_zero_padded(tmp_path: Path) -> None:
    """Extra zeros in the longer image do not count; an extra non-zero byte does."""
    a = _raw(tmp_path / "a", 1 << 20, {100: b"x"})
    b = _raw(tmp_path / "b", 3 << 20, {100: b"x"})
    c = _raw(tmp_path / "c", 3 << 20, {100: b"x", (2 << 20) + 3: b"y"})
    with blockfmt.open(a, "raw") as ia, blockfmt.open(b, "raw") as ib, blockfmt.open(c, "raw") as ic:
        assert compare(ia, ib) is None
        assert compare(ic, ia) == (2 << 20) + 3
        assert compare(ia, ic) == (2 << 20) + 3


def test_status_mismatch_found_where_data_meets_hole(tmp_path: Path) -> None:
    """A written block of zeros is data, a hole is not: same content, different status."""
    a = _raw(tmp_path / "a", 1 << 20, {})
    b = _raw(tmp_path / "b", 1 << 20, {65536: bytes(4096)})
    with blockfmt.open(a, "raw") as ia, blockfmt.open(b, "raw") as ib:
        assert compare(ia, ib) is None
        assert first_status_mismatch(ia, ia) is None
        assert first_status_mismatch(ia, ib) == 65536
