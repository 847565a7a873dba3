"""Cache modes in the Python API: when ``fdatasync`` reaches the disk, counted at the system call."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

import blockfmt
from blockfmt.cache import CacheMode
from blockfmt.convert import convert
from blockfmt.errors import InvalidOptionError

MiB = 1 << 20
#: every mode that promises durability at some point
FLUSHING_MODES = [mode for mode in CacheMode if mode is not CacheMode.UNSAFE]


class SyncCounter:
    """Counts ``os.fdatasync`` calls (the only way blockfmt makes data durable)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real: Callable[[int], None] = os.fdatasync

        def counting(fd: int) -> None:
            self.calls += 1
            real(fd)

        monkeypatch.setattr(os, "fdatasync", counting)


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> SyncCounter:
    return SyncCounter(monkeypatch)


def make(path: Path, fmt: str, size: int = 64 * MiB) -> str:
    blockfmt.create(path, fmt, size)
    return str(path)


def test_parse_takes_qemus_names_and_rejects_others_with_qemus_text() -> None:
    assert [CacheMode.parse(m.value) for m in CacheMode] == list(CacheMode)
    assert CacheMode.parse("off") is CacheMode.NONE  # bdrv_parse_cache_mode's alias
    with pytest.raises(InvalidOptionError, match=r"^Invalid cache option: foo$"):
        CacheMode.parse("foo")


@pytest.mark.parametrize("fmt", ["raw", "vhdx", "vdi"])
@pytest.mark.parametrize("mode", [CacheMode.WRITEBACK, CacheMode.NONE])
def test_writeback_flushes_at_close_not_per_write(
    tmp_path: Path, syncs: SyncCounter, fmt: str, mode: CacheMode
) -> None:
    """Rewrites of allocated data need no metadata: nothing is synced until close, then it is."""
    path = make(tmp_path / f"a.{fmt}", fmt)
    with blockfmt.open(path, fmt, read_only=False) as img:
        img.write_at(0, b"\x01" * MiB)  # allocate first, so the counted writes are plain data
    with blockfmt.open(path, fmt, read_only=False, cache=mode) as img:
        img.write_at(0, b"\x02" * 4096)
        syncs.calls = 0  # VHDX's first write after open updates its headers, synced as QEMU does
        for n in range(1, 8):
            img.write_at(n * 4096, b"\x02" * 4096)
        assert syncs.calls == 0
    assert syncs.calls >= 1
    with blockfmt.open(path, fmt) as img:
        assert img.read_at(0, 8 * 4096) == b"\x02" * (8 * 4096)


@pytest.mark.parametrize("fmt", ["raw", "vhdx", "vdi"])
@pytest.mark.parametrize("mode", [CacheMode.WRITETHROUGH, CacheMode.DIRECTSYNC])
def test_writethrough_syncs_every_write_before_it_returns(
    tmp_path: Path, syncs: SyncCounter, fmt: str, mode: CacheMode
) -> None:
    path = make(tmp_path / f"a.{fmt}", fmt)
    with blockfmt.open(path, fmt, read_only=False, cache=mode) as img:
        for n in range(4):
            before = syncs.calls
            img.write_at(n * 2 * MiB, b"\x03" * 4096)
            assert syncs.calls > before, f"write {n} returned before it was synced"
        before = syncs.calls
        img.write_zeroes(0, 4096)
        assert syncs.calls > before


@pytest.mark.parametrize("fmt", ["raw", "vhdx", "vdi"])
def test_unsafe_never_syncs_and_still_writes_everything(tmp_path: Path, syncs: SyncCounter, fmt: str) -> None:
    """Allocating writes (VHDX log transactions included), an explicit flush and close: no sync at
    all, as QEMU's BDRV_O_NO_FLUSH; the data and metadata still reach the file."""
    path = make(tmp_path / f"a.{fmt}", fmt)
    syncs.calls = 0
    with blockfmt.open(path, fmt, read_only=False, cache=CacheMode.UNSAFE) as img:
        for n in range(4):
            img.write_at(n * 8 * MiB, bytes([n + 1]) * 65536)
        img.flush()
    assert syncs.calls == 0
    with blockfmt.open(path, fmt) as img:
        assert [img.read_at(n * 8 * MiB, 65536) for n in range(4)] == [
            bytes([n + 1]) * 65536 for n in range(4)
        ]
        if fmt != "raw":  # raw has no metadata to check
            assert img.check().clean


@pytest.mark.parametrize("mode", FLUSHING_MODES)
def test_vhdx_log_keeps_its_ordering_flushes_in_every_mode_but_unsafe(
    tmp_path: Path, syncs: SyncCounter, mode: CacheMode
) -> None:
    """An allocating VHDX write goes through the log, whose crash safety rests on flushes between
    its steps: no mode but unsafe may drop them (writeback is the reference count)."""
    counts = {}
    for each in (CacheMode.WRITEBACK, mode):
        path = make(tmp_path / f"{each.value}-{len(counts)}.vhdx", "vhdx")
        with blockfmt.open(path, "vhdx", read_only=False, cache=each) as img:
            before = syncs.calls
            img.driver.write(16 * MiB, memoryview(b"\x04" * 4096))  # the format alone, no per-write flush
            counts[each] = syncs.calls - before
    assert counts[CacheMode.WRITEBACK] >= 2, "an allocating write is at least two ordered log steps"
    assert counts[mode] == counts[CacheMode.WRITEBACK]


def test_convert_unsafe_syncs_only_what_create_does(tmp_path: Path, syncs: SyncCounter) -> None:
    """qemu-img convert's default: the new image's creation is synced (qemu-img's create does that
    too), the copied data never; with writeback the copy is synced before the rename."""
    source = make(tmp_path / "src.raw", "raw", 32 * MiB)
    with blockfmt.open(source, "raw", read_only=False) as img:
        img.write_at(MiB, b"\x05" * (4 * MiB))
    syncs.calls = 0
    make(tmp_path / "probe.vhdx", "vhdx", 32 * MiB)
    create_syncs = syncs.calls
    results = {}
    for mode in (CacheMode.UNSAFE, CacheMode.WRITEBACK):
        syncs.calls = 0
        with blockfmt.open(source, "raw") as img:
            convert(img, tmp_path / f"{mode.value}.vhdx", "vhdx", cache=mode)
        results[mode] = syncs.calls
        with blockfmt.open(tmp_path / f"{mode.value}.vhdx", "vhdx") as out:
            assert out.read_at(0, 6 * MiB) == bytes(MiB) + b"\x05" * (4 * MiB) + bytes(MiB)
    assert results[CacheMode.UNSAFE] == create_syncs
    assert results[CacheMode.WRITEBACK] > create_syncs
