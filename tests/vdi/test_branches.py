"""VDI paths that the rest of the suite and the fuzz corpus did not reach (issue 19, branch coverage):
the map cache's eviction and pages cut by end of file, differencing parents of the wrong kind,
mixed unallocated/discarded stretches in a child, zeroing a block past end of file and resize limits.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import CorruptImageError, InvalidOptionError, UnsupportedOperationError
from blockfmt.fileio import OsImageFile
from blockfmt_vdi.bmap import MAX_CACHED_PAGES, PAGE_ENTRIES, BlockMap
from blockfmt_vdi.constants import BMAP_DISCARDED, BMAP_UNALLOCATED, DISK_SIZE_MAX

from .conftest import MIB
from .test_repair_dense import corrupt, make

U = BMAP_UNALLOCATED


def _short_map(tmp_path: Path, stored: list[int], count: int) -> OsImageFile:
    """A file holding the first entries of a *count*-entry map: the rest lies past end of file."""
    path = tmp_path / "map"
    path.write_bytes(struct.pack(f"<{len(stored)}I", *stored))
    return OsImageFile(str(path), read_only=False)


def test_map_pages_past_the_cache_are_read_again(tmp_path: Path) -> None:
    pages = MAX_CACHED_PAGES + 2
    path = tmp_path / "big.vdi"
    blockfmt.create(path, "vdi", pages * PAGE_ENTRIES * MIB)
    with blockfmt.open(path, read_only=False) as img:
        for page in range(pages):
            img.write_at(page * PAGE_ENTRIES * MIB, bytes([page + 1]) * 512)
    with blockfmt.open(path) as img:
        first_pass = [img.read_at(page * PAGE_ENTRIES * MIB, 1) for page in range(pages)]
        assert len(img._driver.bmap._pages) == MAX_CACHED_PAGES  # the first two were evicted
        assert img.read_at(0, 1) == b"\x01"  # read again from the file
        assert first_pass == [bytes([page + 1]) for page in range(pages)]


def test_map_cut_by_end_of_file_is_an_error_for_every_reader(tmp_path: Path) -> None:
    file = _short_map(tmp_path, [0, 1, 2], 6)
    try:
        table = BlockMap(file, 0, 6)
        assert table.get(2) == 2
        with pytest.raises(CorruptImageError, match="entry 4 lies beyond the end of the file"):
            table.get(4)
        with pytest.raises(CorruptImageError, match="entry 3 lies beyond the end of the file"):
            list(table.runs(1, 4))
        table.set_range(3, [7, 8])  # the cached short page is dropped and read again
        assert [table.get(i) for i in range(5)] == [0, 1, 2, 7, 8]
    finally:
        file.close()


def test_a_vdi_child_needs_a_vdi_parent_of_its_size(tmp_path: Path) -> None:
    vdi, vhdx = tmp_path / "p.vdi", tmp_path / "p.vhdx"
    blockfmt.create(vdi, "vdi", 4 * MIB)
    blockfmt.create(vhdx, "vhdx", 4 * MIB)
    small = tmp_path / "small.vdi"
    blockfmt.create(small, "vdi", 2 * MIB)
    child = tmp_path / "c.vdi"
    blockfmt.create(child, "vdi", None, backing_file=str(vdi), backing_fmt="vdi")
    with blockfmt.open(child, read_only=False) as img, blockfmt.open(vhdx) as other:
        assert img._driver.verify_parent(other._driver) == (
            f"the parent '{other._driver.file.name}' of a differencing VDI must be a VDI image"
        )
        with pytest.raises(InvalidOptionError, match="must be a VDI image"):
            img._driver.link_parent(other._driver, "p.vhdx")
    with blockfmt.open(small, read_only=False) as img, blockfmt.open(vdi) as parent:
        assert img._driver.verify_parent(parent._driver) is None  # not a child: nothing to verify
        with pytest.raises(InvalidOptionError, match=r"parent's virtual size \(4194304 bytes\)"):
            img._driver.link_parent(parent._driver, "p.vdi")
    full = make(tmp_path, 4, 1)
    with blockfmt.open(full, read_only=False) as img, blockfmt.open(vdi) as parent:
        with pytest.raises(UnsupportedOperationError, match="holds data; it cannot get a backing file"):
            img._driver.link_parent(parent._driver, "p.vdi")


def test_child_of_a_modified_parent_is_refused(tmp_path: Path) -> None:
    parent, child = tmp_path / "p.vdi", tmp_path / "c.vdi"
    blockfmt.create(parent, "vdi", 4 * MIB)
    blockfmt.create(child, "vdi", None, backing_file=str(parent), backing_fmt="vdi")
    with open(parent, "r+b") as f:  # uuid_last_snap (the modification UUID) changes
        f.seek(0x198)
        f.write(b"\x42" * 16)
    with blockfmt.open(parent) as p, blockfmt.open(child, open_backing=False) as c:
        message = c._driver.verify_parent(p._driver)
    assert message is not None and message.endswith("(the parent was modified since)")


def test_child_reads_parent_zeros_parent_across_unallocated_and_discarded(tmp_path: Path) -> None:
    parent = make(tmp_path, 4, 4)  # block n holds byte n + 1
    child = tmp_path / "c.vdi"
    blockfmt.create(child, "vdi", None, backing_file=str(parent), backing_fmt="vdi")
    corrupt(child, bmap=[U, BMAP_DISCARDED, BMAP_DISCARDED, U])
    with blockfmt.open(child) as img:
        assert [img.read_at(block * MIB, 1) for block in range(4)] == [b"\x01", b"\x00", b"\x00", b"\x04"]
        assert [(e.offset // MIB, e.length // MIB, e.depth) for e in img.map()] == [
            (0, 1, 1),
            (1, 2, 0),
            (3, 1, 1),
        ]


def test_zeroing_a_block_past_end_of_file_is_an_error(tmp_path: Path) -> None:
    path = make(tmp_path, 4, 2)
    corrupt(path, bmap=[0, 1, 9, U])  # block 2 names slot 9: past the end of the file
    with blockfmt.open(path, read_only=False) as img:
        with pytest.raises(CorruptImageError, match=r"VDI block 2 \(block map entry 9\) lies beyond"):
            img.write_zeroes(2 * MIB, MIB)
        assert img.read_at(0, 1) == b"\x01"


def test_resize_limits(tmp_path: Path) -> None:
    path = make(tmp_path, 4, 1)
    before = path.read_bytes()
    with blockfmt.open(path, read_only=False) as img:
        with pytest.raises(InvalidOptionError, match="Unsupported VDI image size"):
            img.resize(DISK_SIZE_MAX + 512)
        img.resize(4 * MIB - 100, shrink=True)  # rounds up to the same sectors: nothing to do
        assert img.size == 4 * MIB
    assert path.read_bytes() == before
