"""Damaged images: every structure broken in turn gives the good copy or a clear BlockFormatError.

Never another exception, never a read outside the file, never an allocation sized by the damage.
"""

from __future__ import annotations

import random
import struct
import uuid
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import BlockFormatError, CorruptImageError, UnsupportedFeatureError
from blockfmt_vhdx.bat import make_entry
from blockfmt_vhdx.constants import (
    BAT_REGION_GUID,
    FILE_PARAMETERS_GUID,
    HEADER1_OFFSET,
    HEADER2_OFFSET,
    LOGICAL_SECTOR_SIZE_GUID,
    METADATA_REGION_GUID,
    PAGE83_DATA_GUID,
    PHYSICAL_SECTOR_SIZE_GUID,
    REGION_TABLE1_OFFSET,
    REGION_TABLE2_OFFSET,
    VIRTUAL_DISK_SIZE_GUID,
    BatState,
)
from blockfmt_vhdx.structs import FileParameters, RegionTable, RegionTableEntry

from .builders import region_offset, standard_items, write_metadata

MiB = 1 << 20
SIZE = 8 * MiB
PATTERN = bytes(range(256)) * (3 * MiB // 256)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """An 8 MiB dynamic image, 1 MiB blocks, blocks 0-2 written with a pattern."""
    path = tmp_path / "c.vhdx"
    blockfmt.create(path, "vhdx", SIZE, block_size=MiB)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(0, PATTERN)
    return path


def _poke(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _reads_pattern(path: Path) -> None:
    with blockfmt.open(path) as img:
        assert img.read_at(0, len(PATTERN)) == PATTERN
        assert img.read_at(len(PATTERN), SIZE - len(PATTERN)).count(0) == SIZE - len(PATTERN)


def _open_fails(path: Path, cls: type[BlockFormatError] = CorruptImageError) -> str:
    with pytest.raises(cls) as info:
        with blockfmt.open(path, "vhdx") as img:
            img.read_at(0, img.size)
    return str(info.value)


def test_bad_file_signature(image: Path) -> None:
    _poke(image, 0, b"vhdxfilf")
    assert _open_fails(image) == "Invalid VHDX file signature (expected 'vhdxfile')"


@pytest.mark.parametrize("offset", [HEADER1_OFFSET, HEADER2_OFFSET])
def test_one_damaged_header_loses_to_the_other(image: Path, offset: int) -> None:
    _poke(image, offset + 100, b"\xff")
    _reads_pattern(image)


def test_two_damaged_headers_are_fatal_with_qemu_message(image: Path) -> None:
    _poke(image, HEADER1_OFFSET + 8, b"\xff")
    _poke(image, HEADER2_OFFSET, b"HEAD")
    assert _open_fails(image) == "No valid VHDX header found"


def test_damaged_first_region_table_falls_back_to_second(image: Path) -> None:
    _poke(image, REGION_TABLE1_OFFSET + 20, b"\x01")
    _reads_pattern(image)


def test_two_damaged_region_tables_are_fatal(image: Path) -> None:
    _poke(image, REGION_TABLE1_OFFSET + 20, b"\x01")
    _poke(image, REGION_TABLE2_OFFSET, b"REGI")
    assert _open_fails(image) == "VHDX region table checksum mismatch"


def _rewrite_regions(path: Path, change) -> None:
    with open(path, "rb") as f:
        f.seek(REGION_TABLE1_OFFSET)
        table = RegionTable.parse(f.read(RegionTable.SIZE))
    packed = RegionTable(tuple(change(list(table.entries)))).pack()
    _poke(path, REGION_TABLE1_OFFSET, packed)
    _poke(path, REGION_TABLE2_OFFSET, packed)


def test_overlapping_regions_are_refused(image: Path) -> None:
    def overlap(entries: list[RegionTableEntry]) -> list[RegionTableEntry]:
        meta = next(e for e in entries if e.guid == METADATA_REGION_GUID)
        return [RegionTableEntry(e.guid, meta.file_offset, e.length, True) if e.guid == BAT_REGION_GUID else e
                for e in entries]  # fmt: skip

    _rewrite_regions(image, overlap)
    assert "overlaps with region" in _open_fails(image)


def test_region_inside_log_is_refused(image: Path) -> None:
    _rewrite_regions(image, lambda es: [RegionTableEntry(e.guid, MiB, e.length, True) for e in es])
    assert _open_fails(image).startswith("VHDX region 1048576-2097152 overlaps with region 1048576-")


def test_missing_bat_region(image: Path) -> None:
    _rewrite_regions(image, lambda es: [e for e in es if e.guid != BAT_REGION_GUID])
    assert _open_fails(image) == "VHDX region table has no BAT region"


def test_unknown_required_region_is_unsupported(image: Path) -> None:
    odd = RegionTableEntry(uuid.UUID(int=7), 600 * MiB, MiB, True)
    _rewrite_regions(image, lambda es: [*es, odd])
    assert "is required but unknown" in _open_fails(image, UnsupportedFeatureError)


def test_unknown_optional_region_is_ignored(image: Path) -> None:
    odd = RegionTableEntry(uuid.UUID(int=7), 600 * MiB, MiB, False)
    _rewrite_regions(image, lambda es: [*es, odd])
    _reads_pattern(image)


@pytest.mark.parametrize(
    "missing", [FILE_PARAMETERS_GUID, VIRTUAL_DISK_SIZE_GUID, PAGE83_DATA_GUID, LOGICAL_SECTOR_SIZE_GUID,
                PHYSICAL_SECTOR_SIZE_GUID]
)  # fmt: skip
def test_each_missing_metadata_item(image: Path, missing: uuid.UUID) -> None:
    write_metadata(image, [item for item in standard_items(SIZE, MiB) if item[0] != missing])
    assert _open_fails(image).endswith("is missing")


@pytest.mark.parametrize(
    ("guid", "payload", "message"),
    [
        (FILE_PARAMETERS_GUID, FileParameters(3 * MiB).pack(), "VHDX block size 3145728 is invalid"),
        (FILE_PARAMETERS_GUID, FileParameters(512 * MiB).pack(), "VHDX block size 536870912 is invalid"),
        (FILE_PARAMETERS_GUID, b"\0\0", "VHDX file parameters is truncated (2 of 8 bytes)"),
        (VIRTUAL_DISK_SIZE_GUID, struct.pack("<Q", 1 << 63), f"VHDX virtual disk size {1 << 63} is invalid"),
        (VIRTUAL_DISK_SIZE_GUID, struct.pack("<Q", 1000), "VHDX virtual disk size 1000 is invalid"),
        (LOGICAL_SECTOR_SIZE_GUID, struct.pack("<I", 1024), "VHDX logical sector size 1024 is invalid"),
        (PHYSICAL_SECTOR_SIZE_GUID, struct.pack("<I", 0), "VHDX physical sector size 0 is invalid"),
        (PAGE83_DATA_GUID, b"short", "VHDX metadata item page 83 data is truncated"),
    ],
)
def test_out_of_range_metadata_items(image: Path, guid: uuid.UUID, payload: bytes, message: str) -> None:
    items = [(g, payload if g == guid else p, r) for g, p, r in standard_items(SIZE, MiB)]
    write_metadata(image, items)
    assert _open_fails(image) == message


def test_huge_disk_with_tiny_file_is_refused_before_allocating(image: Path) -> None:
    """64 TiB with 1 MiB blocks would need a 512 MiB BAT: refused from the region length, not read."""
    write_metadata(image, standard_items(64 << 40, MiB))
    assert "is too small for" in _open_fails(image)


def test_metadata_item_outside_region(image: Path) -> None:
    write_metadata(image, standard_items(SIZE, MiB))
    meta = region_offset(image, METADATA_REGION_GUID)
    _poke(image, meta + 32 + 16, struct.pack("<I", 2 * MiB))  # first entry's offset
    assert _open_fails(image) == "VHDX metadata item file parameters lies outside the metadata region"


def test_unknown_required_metadata_item(image: Path) -> None:
    write_metadata(image, [*standard_items(SIZE, MiB), (uuid.UUID(int=9), b"x", True)])
    assert "is required but unknown" in _open_fails(image, UnsupportedFeatureError)


def _bat_entry(path: Path, index: int, value: int) -> None:
    _poke(path, region_offset(path, BAT_REGION_GUID) + index * 8, struct.pack("<Q", value))


def test_bat_entry_after_end_of_file_gives_qemu_message(image: Path) -> None:
    size = image.stat().st_size
    _bat_entry(image, 1, make_entry(BatState.FULLY_PRESENT, 1 << 40))
    assert _open_fails(image) == (
        f"VHDX BAT entry 1 start offset {1 << 40} points after end of file ({size}). "
        "Image has probably been truncated."
    )


def test_truncated_image_gives_qemu_end_offset_message(image: Path) -> None:
    size = image.stat().st_size
    with open(image, "r+b") as f:
        f.truncate(size - MiB // 2)
    assert _open_fails(image) == (
        f"VHDX BAT entry 2 end offset {size - 1} points after end of file ({size - MiB // 2}). "
        "Image has probably been truncated."
    )


def test_bat_entry_into_metadata_is_refused(image: Path) -> None:
    meta = region_offset(image, METADATA_REGION_GUID)
    _bat_entry(image, 0, make_entry(BatState.FULLY_PRESENT, meta))
    assert _open_fails(image) == f"VHDX BAT entry 0 offset {meta} overlaps the metadata region"


@pytest.mark.parametrize("state", [4, BatState.PARTIALLY_PRESENT])
def test_bat_entry_with_invalid_state(image: Path, state: int) -> None:
    _bat_entry(image, 0, state)
    assert _open_fails(image) == f"VHDX BAT entry 0 has invalid state {state}"


@pytest.mark.parametrize("state", [BatState.UNDEFINED, BatState.UNMAPPED, BatState.UNMAPPED_V095])
def test_zero_read_states(image: Path, state: int) -> None:
    _bat_entry(image, 1, make_entry(state, 1 << 62))  # reserved offset bits are ignored
    with blockfmt.open(image) as img:
        assert img.read_at(MiB, MiB).count(0) == MiB
        assert img.read_at(0, MiB) == PATTERN[:MiB]


def test_random_byte_damage_never_escapes_the_error_tree(image: Path) -> None:
    """Seeded damage anywhere in the metadata-bearing first 8 MiB: good data or a BlockFormatError."""
    pristine = image.read_bytes()
    rng = random.Random(1234)
    hot = [0, HEADER1_OFFSET, HEADER2_OFFSET, REGION_TABLE1_OFFSET, region_offset(image, BAT_REGION_GUID),
           region_offset(image, METADATA_REGION_GUID), MiB]  # fmt: skip
    outcomes = {"ok": 0, "error": 0}
    for _ in range(120):
        damaged = bytearray(pristine)
        for _ in range(rng.randrange(1, 4)):
            pos = (
                rng.choice(hot) + rng.randrange(0, 512) if rng.random() < 0.8 else rng.randrange(len(damaged))
            )
            damaged[pos] = rng.randrange(256)
        image.write_bytes(damaged)
        try:
            with blockfmt.open(image, options={"log_replay": "memory"}) as img:
                img.read_at(0, img.size)
                img.map()
                img.check()
            outcomes["ok"] += 1
        except BlockFormatError:
            outcomes["error"] += 1
    assert outcomes["ok"] and outcomes["error"]
