"""Cross-validation against the real qemu-img / qemu-io 7.2: data, check, compare, map, create, messages."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import BlockFormatError
from blockfmt.testing.qemu import run_tool

from .conftest import MIB, apply_to_reference, qemu_img_ok, qemu_io_write, random_writes
from .test_structs import CASES_084

pytestmark = pytest.mark.qemu

UUID_FIELDS = slice(392, 424)  # uuid_image and uuid_last_snap: random in both tools
SIZES = [64 * MIB, 8 * MIB + 300 * 1024, 5 * MIB + 1000]


def qemu_create(qemu_img: str, path: Path, size: int, *, static: bool = False) -> None:
    qemu_img_ok(
        qemu_img, "create", "-f", "vdi", "-o", f"static={'on' if static else 'off'}", str(path), str(size)
    )


def qemu_map(qemu_img: str, path: Path) -> list[tuple]:
    out = qemu_img_ok(qemu_img, "map", "--output=json", "-f", "vdi", str(path))
    return [(e["start"], e["length"], e["data"], e["zero"], e.get("offset")) for e in json.loads(out)]


def our_map(path: Path) -> list[tuple]:
    with blockfmt.open(path) as img:
        return [(e.offset, e.length, e.data, e.zero, e.host_offset) for e in img.map()]


def assert_reads_match(path: Path, reference: bytes, seed: int) -> None:
    rng = random.Random(seed)
    with blockfmt.open(path) as img:
        assert img.size == len(reference)
        assert img.read_at(0, len(reference)) == reference
        for _ in range(100):  # unaligned, many crossing block boundaries
            length = rng.randint(1, 3 * MIB)
            offset = rng.randint(0, len(reference) - length)
            assert img.read_at(offset, length) == reference[offset : offset + length]


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("size", SIZES)
def test_qemu_written_image_reads_back_identically(tmp_path, qemu_img, qemu_io, size, static):
    path = tmp_path / "q.vdi"
    qemu_create(qemu_img, path, size, static=static)
    size = -(-size // 512) * 512  # qemu-img rounds the size up to sectors
    writes = random_writes(seed=size + static, size=size, count=12)
    qemu_io_write(qemu_io, path, writes)
    reference = bytearray(size)
    apply_to_reference(reference, writes)
    assert_reads_match(path, bytes(reference), seed=size)
    assert our_map(path) == qemu_map(qemu_img, path)


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
def test_blockfmt_written_image_passes_qemu_check_compare_and_map(tmp_path, qemu_img, static):
    size = 8 * MIB + 300 * 1024
    path, raw = tmp_path / "b.vdi", tmp_path / "ref.raw"
    blockfmt.create(path, "vdi", size, static=static)
    writes = random_writes(seed=7 + static, size=size, count=15)
    reference = bytearray(size)
    apply_to_reference(reference, writes)
    raw.write_bytes(reference)
    with blockfmt.open(path, read_only=False) as img:
        for w in writes:
            img.write_at(w.offset, bytes([w.pattern]) * w.length)
        img.discard(0, MIB)  # may free block 0 if it was written whole...
        img.write_at(0, reference[:MIB])  # ...and it is written back
    assert (
        qemu_img_ok(qemu_img, "check", "-f", "vdi", str(path)).strip() == "No errors were found on the image."
    )
    assert "Images are identical." in qemu_img_ok(
        qemu_img, "compare", "-f", "vdi", "-F", "raw", str(path), str(raw)
    )
    assert our_map(path) == qemu_map(qemu_img, path)


def test_mixed_writers_both_tools_read_right(tmp_path, qemu_img, qemu_io):
    size = 6 * MIB + 4096
    reference = bytearray(size)
    ours, theirs = tmp_path / "ours.vdi", tmp_path / "theirs.vdi"
    blockfmt.create(ours, "vdi", size)
    qemu_create(qemu_img, theirs, size)
    first, second = random_writes(1, size, 8), random_writes(2, size, 8)
    apply_to_reference(reference, first)
    apply_to_reference(reference, second)
    for path, (by_us, by_qemu) in ((ours, (first, second)), (theirs, (second, first))):
        expected = bytearray(size)
        for batch, writer in ((by_us, "blockfmt"), (by_qemu, "qemu")):
            apply_to_reference(expected, batch)
            if writer == "blockfmt":
                with blockfmt.open(path, read_only=False) as img:
                    for w in batch:
                        img.write_at(w.offset, bytes([w.pattern]) * w.length)
            else:
                qemu_io_write(qemu_io, path, batch)
        raw = tmp_path / f"{path.stem}.raw"
        raw.write_bytes(expected)
        assert_reads_match(path, bytes(expected), seed=3)
        assert (
            qemu_img_ok(qemu_img, "check", "-f", "vdi", str(path)).strip()
            == "No errors were found on the image."
        )
        assert "Images are identical." in qemu_img_ok(
            qemu_img, "compare", "-f", "vdi", "-F", "raw", str(path), str(raw)
        )


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("size", [0, 512, 64 * MIB, 5 * MIB + 1000, 300 * MIB + 512])
def test_created_bytes_equal_qemu_img_create_but_uuids(tmp_path, qemu_img, size, static):
    ours, theirs = tmp_path / "ours.vdi", tmp_path / "theirs.vdi"
    blockfmt.create(ours, "vdi", size, static=static)
    qemu_create(qemu_img, theirs, size, static=static)
    a, b = bytearray(ours.read_bytes()), bytearray(theirs.read_bytes())
    assert len(a) == len(b)
    a[UUID_FIELDS] = b[UUID_FIELDS] = bytes(32)
    assert a == b


def test_create_above_the_maximum_size_gives_qemus_message(tmp_path, qemu_img):
    size = 0x1FFFFF8000000 + 512
    result = run_tool([qemu_img, "create", "-f", "vdi", str(tmp_path / "q.vdi"), str(size)])
    with pytest.raises(BlockFormatError) as info:
        blockfmt.create(tmp_path / "b.vdi", "vdi", size)
    assert result.returncode == 1
    assert f"qemu-img: {tmp_path / 'q.vdi'}: {info.value}" in result.stderr


@pytest.mark.parametrize(("name", "pokes", "message"), CASES_084, ids=[c[0] for c in CASES_084])
def test_iotest_084_messages_equal_qemu_img_info(tmp_path, qemu_img, name, pokes, message):
    path = tmp_path / "t.vdi"
    qemu_create(qemu_img, path, 64 * MIB)
    with open(path, "r+b") as f:
        for offset, raw in pokes:
            f.seek(offset)
            f.write(raw)
    result = run_tool([qemu_img, "info", "-f", "vdi", str(path)])
    if message is None:
        assert result.returncode == 0, result.output
        with blockfmt.open(path) as img:
            assert f"({img.size} bytes)" in result.stdout
        return
    with pytest.raises(BlockFormatError) as info:
        blockfmt.open(path)
    assert result.stderr.strip() == f"qemu-img: Could not open '{path}': {info.value}"
    assert str(info.value) == message
