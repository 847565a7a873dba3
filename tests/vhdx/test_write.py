"""Write path: allocation, zero/unmap states, BAT batching, and cross-checks with qemu-img/qemu-io."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import blockfmt
from blockfmt.testing.qemu import run_tool
from blockfmt_vhdx.constants import BatState

from .workload import (
    CHUNK_SPAN_512,
    apply_to_image,
    apply_to_raw,
    assert_same_as_raw,
    make_raw,
    probe_ranges,
    qemu_io_commands,
    random_ops,
)

MiB = 1 << 20


def _new(tmp_path: Path, size: int, **options) -> Path:
    path = tmp_path / "w.vhdx"
    blockfmt.create(path, "vhdx", size, **options)
    return path


def test_partial_write_to_new_block_leaves_rest_zero(tmp_path: Path) -> None:
    """A new block's unwritten remainder reads as zeros, in ZERO and NOT_PRESENT images alike."""
    for zero in (True, False):
        path = _new(tmp_path, 8 * MiB, block_size=MiB, block_state_zero=zero)
        with blockfmt.open(path, read_only=False) as img:
            img.write_at(MiB + 100, b"x" * 10)
        with blockfmt.open(path) as img:
            block = img.read_at(MiB, MiB)
            assert block[100:110] == b"x" * 10
            assert block.count(0) == MiB - 10
        path.unlink()


def test_new_blocks_are_appended_and_file_stays_sparse(tmp_path: Path) -> None:
    """Allocation grows the file by whole blocks at 1 MiB alignment without writing zeros."""
    path = _new(tmp_path, 64 * MiB, block_size=8 * MiB)
    before = path.stat().st_size
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(20 * MiB, b"y")
        extents = [e for e in img.map() if e.data]
    assert path.stat().st_size == before + 8 * MiB
    assert extents == [blockfmt.Extent(16 * MiB, 8 * MiB, True, False, before)]
    assert path.stat().st_blocks * 512 < before + MiB  # one 4 KiB page written, not 8 MiB


def test_one_request_is_one_log_transaction(tmp_path: Path, monkeypatch) -> None:
    """Every BAT entry changed by one request goes into one transaction, adjacent entries merged."""
    from blockfmt_vhdx import log

    calls: list[list[tuple[int, bytes]]] = []
    original = log.LogWriter.write_transaction

    def spy(self, updates):
        calls.append([(o, bytes(d)) for o, d in updates])
        return original(self, updates)

    monkeypatch.setattr(log.LogWriter, "write_transaction", spy)
    path = _new(tmp_path, 64 * MiB, block_size=MiB)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(MiB - 1, b"z" * (5 * MiB))
        bat_offset = img.driver.regions.bat.file_offset
    assert len(calls) == 1
    ((offset, data),) = calls[0]
    assert offset == bat_offset and len(data) == 6 * 8


def test_neighbouring_bat_entries_in_one_sector_stay_intact(tmp_path: Path) -> None:
    """QEMU #727 regression: separate BAT updates to entries of one sector keep each other."""
    path = _new(tmp_path, 600 * MiB, block_size=MiB)
    blocks = [0, 1, 2, 63, 64, 65, 511, 512]  # 512 entries per 4 KiB sector: borders included
    with blockfmt.open(path, read_only=False) as img:
        for block in blocks:
            img.write_at(block * MiB + 7, bytes([block % 251 + 1]) * 9)
    with blockfmt.open(path) as img:
        for block in blocks:
            assert img.read_at(block * MiB + 7, 9) == bytes([block % 251 + 1]) * 9
        assert sorted(b for b in range(600) if img.driver.bat.state(b) == BatState.FULLY_PRESENT) == blocks


def test_write_zeroes_whole_blocks_sets_zero_state_without_allocating(tmp_path: Path) -> None:
    path = _new(tmp_path, 16 * MiB, block_size=MiB, block_state_zero=False)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(0, b"\xff" * (4 * MiB))
        size_before = path.stat().st_size
        img.write_zeroes(MiB // 2, 3 * MiB)  # half of block 0, blocks 1-2 whole, half of block 3
        assert path.stat().st_size == size_before
        drv = img.driver
        states = [drv.bat.state(b) for b in range(5)]
        assert states == [BatState.FULLY_PRESENT, BatState.ZERO, BatState.ZERO, BatState.FULLY_PRESENT, 0]
        data = img.read_at(0, 4 * MiB)
    assert data == b"\xff" * (MiB // 2) + bytes(3 * MiB) + b"\xff" * (MiB // 2)


def test_write_zeroes_over_many_blocks_commits_in_batches(tmp_path: Path, monkeypatch) -> None:
    """Zeroing NOT_PRESENT blocks changes every entry, STATE_CHANGE_BATCH blocks per transaction:
    one transaction for the whole range held a dict entry per block (888 MiB of memory to zero
    4 TiB of 1 MiB blocks)."""
    from blockfmt_vhdx import image as vhdx_image
    from blockfmt_vhdx import log

    monkeypatch.setattr(vhdx_image, "STATE_CHANGE_BATCH", 1000)
    entries: list[int] = []  # BAT entries per transaction
    original = log.LogWriter.write_transaction

    def spy(self, updates):
        entries.append(sum(len(data) for _offset, data in updates) // 8)
        return original(self, updates)

    monkeypatch.setattr(log.LogWriter, "write_transaction", spy)
    path = _new(tmp_path, 4500 * MiB, block_size=MiB, block_state_zero=False)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(2500 * MiB + 5, b"\x77" * (2 * MiB))
        img.flush()
        entries.clear()
        img.write_zeroes(0, 4500 * MiB)
        assert entries == [1000, 1000, 1000, 1000, 500]
        assert {img.driver.bat.state(block) for block in range(4500)} == {BatState.ZERO}
    with blockfmt.open(path) as img:
        assert img.read_at(2500 * MiB, 3 * MiB) == bytes(3 * MiB)
        assert img.check().clean


def test_discard_unmaps_whole_blocks_only(tmp_path: Path) -> None:
    path = _new(tmp_path, 16 * MiB, block_size=MiB)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(0, b"\xee" * (3 * MiB))
        img.discard(MiB // 2, 2 * MiB)
        assert [img.driver.bat.state(b) for b in range(3)] == [
            BatState.FULLY_PRESENT, BatState.UNMAPPED, BatState.FULLY_PRESENT,
        ]  # fmt: skip
        assert img.read_at(0, 3 * MiB) == b"\xee" * MiB + bytes(MiB) + b"\xee" * MiB


def test_fixed_image_zeroes_in_place_and_never_unmaps(tmp_path: Path) -> None:
    """LeaveBlockAllocated (§2.6.2.1): zeroing and discarding keep every block FULLY_PRESENT."""
    path = _new(tmp_path, 8 * MiB, block_size=MiB, subformat="fixed")
    size = path.stat().st_size
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(0, b"\x11" * (4 * MiB))
        img.write_zeroes(0, 2 * MiB, unmap=True)
        img.discard(2 * MiB, 2 * MiB)
        assert {img.driver.bat.state(b) for b in range(8)} == {BatState.FULLY_PRESENT}
        assert img.read_at(0, 4 * MiB) == bytes(2 * MiB) + b"\x11" * (2 * MiB)
    assert path.stat().st_size == size


def test_header_guids_change_once_on_first_write(tmp_path: Path) -> None:
    """§2.2.2: FileWriteGuid and DataWriteGuid are renewed before the first change after open."""
    path = _new(tmp_path, 8 * MiB, block_size=MiB)
    with blockfmt.open(path) as img:
        first = img.driver.headers.current
    with blockfmt.open(path, read_only=False) as img:
        assert img.driver.headers.current == first  # opening read-write changes nothing
        img.write_at(0, b"a")
        after_one = img.driver.headers.current
        img.write_at(MiB, b"b")
        after_two = img.driver.headers.current
    assert after_one.file_write_guid != first.file_write_guid
    assert after_one.data_write_guid != first.data_write_guid
    assert after_one.sequence_number > first.sequence_number
    assert (after_two.file_write_guid, after_two.data_write_guid) == (
        after_one.file_write_guid,
        after_one.data_write_guid,
    )


def test_block_status_is_exact(tmp_path: Path) -> None:
    """map reports FULLY_PRESENT runs as data at their host offsets, everything else as zeros."""
    path = _new(tmp_path, 32 * MiB, block_size=MiB)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(2 * MiB, b"d" * (2 * MiB))
        img.write_at(10 * MiB + 5, b"e")
        extents = img.map()
        base = img.driver.data_offset(2)
    assert extents == [
        blockfmt.Extent(0, 2 * MiB, False, True),
        blockfmt.Extent(2 * MiB, 2 * MiB, True, False, base),
        blockfmt.Extent(4 * MiB, 6 * MiB, False, True),
        blockfmt.Extent(10 * MiB, MiB, True, False, base + 2 * MiB),
        blockfmt.Extent(11 * MiB, 21 * MiB, False, True),
    ]


# -- random workloads against a raw reference ----------------------------------------------------


@pytest.mark.qemu
@pytest.mark.parametrize(
    ("seed", "block_size", "size", "options"),
    [
        (1, MiB, 45 * MiB + 512, {}),
        (2, 8 * MiB, 70 * MiB + 4096, {"block_state_zero": False}),
        pytest.param(3, 32 * MiB, CHUNK_SPAN_512 + 40 * MiB, {}, marks=pytest.mark.slow),
        (4, MiB, 30 * MiB, {"subformat": "fixed"}),
    ],
)
def test_blockfmt_workload_matches_raw_per_qemu_compare(
    qemu_img, tmp_path, seed, block_size, size, options
) -> None:
    """Unaligned, block- and chunk-crossing writes, overwrites, zero writes, discards: qemu-img
    compare finds the image identical to a raw file that got the same requests."""
    path = _new(tmp_path, size, block_size=block_size, **options)
    raw = make_raw(tmp_path / "ref.raw", size)
    ops = random_ops(seed, size, block_size)
    with blockfmt.open(path, read_only=False) as img:
        apply_to_image(img, ops)
    apply_to_raw(raw, ops, block_size, size, fixed=options.get("subformat") == "fixed")
    compare = run_tool([qemu_img, "compare", "-f", "vhdx", "-F", "raw", str(path), str(raw)])
    assert compare.returncode == 0, compare.output
    check = run_tool([qemu_img, "check", "-f", "vhdx", str(path)])
    assert check.returncode == 0, check.output


def test_workload_across_chunk_border_survives_reopen(tmp_path: Path) -> None:
    """Requests around the first sector bitmap entry (4 GiB with 512-byte sectors) read back after
    a fresh open exactly as a raw file that got the same requests."""
    size = CHUNK_SPAN_512 + 9 * MiB + 512
    path = _new(tmp_path, size, block_size=MiB)
    raw = make_raw(tmp_path / "ref.raw", size)
    ops = random_ops(11, size, MiB)
    with blockfmt.open(path, read_only=False) as img:
        apply_to_image(img, ops)
        assert img.driver.geometry.payload_index(4096) == 4097
    apply_to_raw(raw, ops, MiB, size)
    with blockfmt.open(path) as img:
        assert img.driver.bat.bitmap_entry(0) == 0  # BAT index 4096: never touched
        assert_same_as_raw(img, raw, probe_ranges(ops, size, MiB, 11))


_QEMU_BLOCK_SIZES = (MiB, 8 * MiB, 32 * MiB, 256 * MiB, 0)
_QEMU_FULL = list(itertools.product(_QEMU_BLOCK_SIZES, (MiB, 8 * MiB), ("dynamic", "fixed"), ("on", "off")))
_QEMU_PAIRWISE = [
    (MiB, MiB, "dynamic", "on"),
    (MiB, 8 * MiB, "fixed", "off"),
    (8 * MiB, 8 * MiB, "dynamic", "off"),
    (32 * MiB, MiB, "fixed", "on"),
    (256 * MiB, 8 * MiB, "dynamic", "on"),
    (0, MiB, "fixed", "off"),
]


def _qemu_writes_blockfmt_reads(qemu_img, qemu_io, tmp_path, block_size, log_size, sub, zero) -> None:
    effective = block_size or 16 * MiB
    size = (CHUNK_SPAN_512 if sub == "dynamic" else 0) + 2 * effective + 5 * MiB + 512
    path = tmp_path / "q.vhdx"
    opts = f"log_size={log_size},subformat={sub},block_state_zero={zero}"
    if block_size:
        opts += f",block_size={block_size}"
    created = run_tool([qemu_img, "create", "-f", "vhdx", "-o", opts, str(path), str(size)])
    assert created.returncode == 0, created.output
    seed = block_size + log_size + len(sub) + len(zero)
    ops = random_ops(seed, size, effective, kinds=("write", "zero"))
    wrote = run_tool([qemu_io, "-f", "vhdx", *qemu_io_commands(ops), str(path)])
    assert wrote.returncode == 0 and "error" not in wrote.output.lower(), wrote.output
    raw = make_raw(tmp_path / "ref.raw", size)
    apply_to_raw(raw, ops, effective, size)
    with blockfmt.open(path) as img:
        assert img.size == size
        assert_same_as_raw(img, raw, probe_ranges(ops, size, effective, seed))


@pytest.mark.qemu
@pytest.mark.parametrize(("block_size", "log_size", "sub", "zero"), _QEMU_PAIRWISE)
def test_qemu_io_workload_reads_back_identical(
    qemu_img, qemu_io, tmp_path, block_size, log_size, sub, zero
) -> None:
    """qemu-img create + qemu-io writes; blockfmt reads the same bytes, across block and chunk borders."""
    _qemu_writes_blockfmt_reads(qemu_img, qemu_io, tmp_path, block_size, log_size, sub, zero)


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize(("block_size", "log_size", "sub", "zero"), _QEMU_FULL)
def test_qemu_io_workload_reads_back_identical_full(
    qemu_img, qemu_io, tmp_path, block_size, log_size, sub, zero
) -> None:
    _qemu_writes_blockfmt_reads(qemu_img, qemu_io, tmp_path, block_size, log_size, sub, zero)


@pytest.mark.qemu
def test_mixed_sessions_on_one_image(qemu_img, qemu_io, tmp_path: Path) -> None:
    """qemu-io, then blockfmt, then qemu-io again on one image: every session sees the others' data."""
    size = 40 * MiB + 512
    path = tmp_path / "m.vhdx"
    assert (
        run_tool([qemu_img, "create", "-f", "vhdx", "-o", "block_size=1M", str(path), str(size)]).returncode
        == 0
    )
    raw = make_raw(tmp_path / "ref.raw", size)
    first, second, third = (
        random_ops(seed, size, MiB, count=15, kinds=("write", "zero")) for seed in (7, 8, 9)
    )
    assert run_tool([qemu_io, "-f", "vhdx", *qemu_io_commands(first), str(path)]).returncode == 0
    with blockfmt.open(path, read_only=False) as img:
        apply_to_image(img, second)
    assert run_tool([qemu_io, "-f", "vhdx", *qemu_io_commands(third), str(path)]).returncode == 0
    for ops in (first, second, third):
        apply_to_raw(raw, ops, MiB, size)
    compare = run_tool([qemu_img, "compare", "-f", "vhdx", "-F", "raw", str(path), str(raw)])
    assert compare.returncode == 0, compare.output
    with blockfmt.open(path) as img:
        assert_same_as_raw(img, raw, [(0, size)])
    check = run_tool([qemu_img, "check", "-f", "vhdx", str(path)])
    assert check.returncode == 0, check.output
