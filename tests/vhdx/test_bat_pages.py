"""The BAT read in pages with a bounded cache: many pages through a cache of two, staged entries
kept across evictions, streaming check and allocation, and memory that does not follow the disk.

The page and cache sizes are shrunk here so that a small image spans many pages; the code paths
are those of a 64 TiB image with the real sizes.
"""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import pytest

import blockfmt
from blockfmt_vhdx import bat as bat_module
from blockfmt_vhdx.bat import KIND_DATA, KIND_ZERO, make_entry
from blockfmt_vhdx.constants import BatState

from .test_check import _set_entry

MiB = 1 << 20
GiB = 1 << 30
#: 1 MiB blocks, 512-byte sectors: a chunk (and with one chunk per page, a page) is 4 GiB of disk
CHUNK = 4 * GiB


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """One chunk per page, two pages cached, streams of two chunks, streaming above two pages."""
    monkeypatch.setattr(bat_module, "PAGE_ENTRIES", 8)
    monkeypatch.setattr(bat_module, "MAX_CACHED_PAGES", 2)
    monkeypatch.setattr(bat_module, "STREAM_BYTES", 2 * (4096 + 1) * 8)
    monkeypatch.setattr(bat_module, "_STREAM_ABOVE_PAGES", 2)


def _new(tmp_path: Path, chunks: int) -> Path:
    """A new image of *chunks* chunks of 1 MiB blocks."""
    path = tmp_path / "p.vhdx"
    blockfmt.create(path, "vhdx", chunks * CHUNK, block_size=MiB)
    return path


def _blocks(rng: random.Random, count: int, size: int) -> list[int]:
    return sorted(rng.sample(range(size // MiB), count))


@pytest.mark.usefixtures("small_pages")
def test_writes_over_many_pages_read_back_after_reopen(tmp_path: Path) -> None:
    """Blocks spread over 10 pages, written through a 2-page cache without a flush in between,
    read back as written before and after reopening; writes after a reopen (whose allocation
    streams the BAT for the end of the data) never land on earlier blocks."""
    size = 10 * CHUNK
    path = _new(tmp_path, 10)
    rng = random.Random(7)
    blocks = _blocks(rng, 60, size)
    expected = {block * MiB + 512: rng.randbytes(4096) for block in blocks}
    first_round = dict(list(expected.items())[::2])
    with blockfmt.open(path, read_only=False) as img:
        for offset, data in first_round.items():
            img.write_at(offset, data)
        for offset, data in first_round.items():
            assert img.read_at(offset, 4096) == data
    with blockfmt.open(path, read_only=False) as img:
        assert img.check().clean
        for offset, data in expected.items():
            if offset not in first_round:
                img.write_at(offset, data)
    with blockfmt.open(path) as img:
        assert img.check().clean
        for offset, data in expected.items():
            assert img.read_at(offset - 512, 4096 + 1024) == bytes(512) + data + bytes(512)
        assert sum(e.length for e in img.map() if e.data) == len(blocks) * MiB


@pytest.mark.usefixtures("small_pages")
def test_staged_entries_survive_eviction_and_commit_in_bounded_batches(tmp_path: Path) -> None:
    """Pages with staged entries are never dropped; once more than the cache holds, a write commits."""
    path = _new(tmp_path, 8)
    with blockfmt.open(path, read_only=False) as img:
        drv = img.driver
        for page in range(3):  # one write per page: 3 pinned pages > a cache of 2, then a commit
            img.write_at(page * CHUNK, b"%d" % page * 100)
        assert drv.bat.pinned_pages == 0  # the third write committed all of them
        for page in range(3, 5):
            img.write_at(page * CHUNK, b"%d" % page * 100)
        assert drv.bat.pinned_pages == 2
        for page in range(8):  # touching every page evicts only the unpinned ones
            img.read_at(page * CHUNK + MiB, 10)
        assert [drv.bat.state(page * drv.bat.blocks_per_page) for page in range(5)] == [
            BatState.FULLY_PRESENT
        ] * 5
        assert img.check().clean  # check streams the BAT with the staged entries laid over it
    with blockfmt.open(path) as img:
        for page in range(5):
            assert img.read_at(page * CHUNK, 100) == b"%d" % page * 100


@pytest.mark.usefixtures("small_pages")
def test_runs_across_pages_merge_and_map_is_exact(tmp_path: Path) -> None:
    """A data run that crosses page (chunk) borders is one run and one mapped extent."""
    size = 6 * CHUNK
    path = _new(tmp_path, 6)
    start = 2 * CHUNK - 3 * MiB
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(start, b"\x01" * (6 * MiB))
    with blockfmt.open(path) as img:
        runs = list(img.driver.bat.runs(0, size // MiB))
        first = start // MiB
        assert runs == [
            (KIND_ZERO, 0, first),
            (KIND_DATA, first, first + 6),
            (KIND_ZERO, first + 6, size // MiB),
        ]
        data = [e for e in img.map() if e.data]
        assert [(e.offset, e.length) for e in data] == [(start, 6 * MiB)]
        assert img.read_at(start - 1, 6 * MiB + 2) == b"\0" + b"\x01" * (6 * MiB) + b"\0"


@pytest.mark.usefixtures("small_pages")
def test_check_reports_bad_entries_on_every_streamed_page(tmp_path: Path) -> None:
    """Check streams pages (two chunks each here); problems in different pages are all found."""
    path = _new(tmp_path, 6)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(0, b"x")
        geometry = img.driver.geometry
    bad_blocks = [5, 4096 * 3 + 1, 4096 * 5 + 7]
    for block in bad_blocks:
        _set_entry(path, geometry.payload_index(block), make_entry(BatState.FULLY_PRESENT, 1 << 40))
    with blockfmt.open(path) as img:
        result = img.check()
    assert result.corruptions == 3
    assert [m.split(" start offset")[0] for m in result.messages] == [
        f"VHDX BAT entry {geometry.payload_index(b)}" for b in bad_blocks
    ]


def test_check_of_a_huge_bat_holds_no_copy_of_it(tmp_path: Path) -> None:
    """A 4 TiB disk with 1 MiB blocks has a 32 MiB BAT: open, check and a full map stay far below it."""
    path = tmp_path / "h.vhdx"
    blockfmt.create(path, "vhdx", 4 << 40, block_size=MiB)
    tracemalloc.start()
    try:
        with blockfmt.open(path) as img:
            assert img.check().clean
            assert [e.data for e in img.map()] == [False]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * MiB, peak
