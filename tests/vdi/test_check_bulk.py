"""A hostile block map with more problems than the check lists: the counts stay exact.

Past ``MAX_MESSAGES`` listed problems the read-only check counts whole map pages at once instead of
entry by entry (the coverage-guided fuzzer's 92 timeouts were maps of half a million duplicates).
Both ways must agree: the same image is checked with the cap as shipped and with a cap no map
reaches, so every entry goes through the per-entry loop.
"""

from __future__ import annotations

import random
import struct

import pytest

import blockfmt
import blockfmt_vdi.check
from blockfmt_vdi.bmap import PAGE_ENTRIES
from blockfmt_vdi.constants import BMAP_DISCARDED, BMAP_UNALLOCATED

from .conftest import MIB

BLOCKS = 3 * PAGE_ENTRIES + 77  # pages of the map, the last one short
WRITTEN = 4  # data blocks in the file; the file then ends in the middle of the fifth


def _hostile(path, seed: int) -> None:
    """Every kind of bad entry, mixed with good and unallocated ones, over several map pages."""
    blockfmt.create(path, "vdi", BLOCKS * MIB)
    with blockfmt.open(path, read_only=False) as img:
        for block in range(WRITTEN):
            img.write_at(block * MIB, bytes([block + 1]) * 512)
    header = path.read_bytes()[:512]
    offset_bmap, offset_data = struct.unpack_from("<II", header, 340)
    rng = random.Random(seed)
    kinds = (
        lambda: BMAP_UNALLOCATED,
        lambda: BMAP_DISCARDED,
        lambda: rng.randrange(WRITTEN),  # in the file: duplicates of the real blocks
        lambda: WRITTEN,  # the block the end of file cuts short
        lambda: rng.randrange(WRITTEN + 1, BLOCKS),  # past end of file
        lambda: rng.randrange(BLOCKS, 1 << 31),  # too large
    )
    entries = [rng.choice(kinds)() for _ in range(BLOCKS)]
    with open(path, "r+b") as f:
        f.seek(offset_bmap)
        f.write(struct.pack(f"<{BLOCKS}I", *entries))
        f.truncate(offset_data + WRITTEN * MIB + MIB // 2)


def _scan(path, cap: int, monkeypatch) -> blockfmt_vdi.check._Scan:
    """The check's whole tally (counts, highest entry), not only what it prints."""
    monkeypatch.setattr(blockfmt_vdi.check, "MAX_MESSAGES", cap)
    with blockfmt.open(path, "vdi") as img:
        return blockfmt_vdi.check._scan(img._driver, fix=False)


@pytest.mark.parametrize("seed", [1, 2])
def test_bulk_counts_equal_the_per_entry_counts(tmp_path, monkeypatch, seed) -> None:
    path = tmp_path / "t.vdi"
    _hostile(path, seed)
    exact = _scan(path, 1 << 30, monkeypatch)
    capped = _scan(path, 100, monkeypatch)
    bad = exact.result.corruptions
    assert bad > 2 * PAGE_ENTRIES and len(exact.result.messages) == bad  # several pages in bulk
    assert (capped.result.corruptions, capped.result.corruptions_fixed) == (bad, 0)
    tally = ("counted", "allocated", "max_entry", "max_block", "seen")
    assert [getattr(capped, name) for name in tally] == [getattr(exact, name) for name in tally]
    assert exact.result.messages[-1] == f"ERROR: allocated blocks mismatch, is {exact.counted}, should be 4"
    assert capped.result.messages == [
        *exact.result.messages[:100],
        f"({bad - 100} more problems of the kinds above are counted but not listed)",
    ]
    with blockfmt.open(path, "vdi") as img:
        assert img.check().corruptions == bad  # through the public API, with the cap as shipped
