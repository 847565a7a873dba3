"""Readers with force-share while one writer writes: threads in one process and separate processes.

What a force-share reader gets is QEMU's ``-U`` contract: no consistency with what the writer has
in flight (its block map was read at open), but never a wrong byte where nothing changes, never
anything but a :class:`~blockfmt.errors.BlockFormatError`, and never a hang. A reader without
force-share is refused with the lock error while the writer holds the image. After the writer
closes, a new reader sees every write.

A VHDX writer keeps the header's LogGuid set while it has the image open (its log is live), so a
read-only open refuses unless it replays the log in memory: the VHDX readers ask for that
(``log_replay=memory``), as any reader of a VHDX someone is writing must.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import traceback
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import BlockFormatError, ImageLockedError

MiB = 1 << 20
SIZE = 32 * MiB
#: written before the readers open and never touched again: every read of it must be exact
STABLE = (0, 2 * MiB, b"\x5e")
WRITES = 24
READERS = 3
READ_SECONDS = 1.5


def _make(path: Path, fmt: str) -> None:
    blockfmt.create(path, fmt, SIZE, **({"block_size": MiB} if fmt == "vhdx" else {}))
    offset, length, byte = STABLE
    with blockfmt.open(path, read_only=False) as image:
        image.write_at(offset, byte * length)


def _write_all(path: Path, started: threading.Event | None = None) -> None:
    """The writer: allocating writes past the stable range, one block each, flushed every time."""
    with blockfmt.open(path, read_only=False) as image:
        if started is not None:
            started.set()
        for n in range(WRITES):
            image.write_at(4 * MiB + n * MiB, bytes([n + 1]) * 65536)
            image.flush()


def _read_loop(path: str, fmt: str, seconds: float) -> tuple[int, list[str]]:
    """A force-share reader: the stable range over and over, plus the whole disk; returns
    (reads done, problems)."""
    offset, length, byte = STABLE
    problems: list[str] = []
    reads = 0
    try:
        options = {"log_replay": "memory"} if fmt == "vhdx" else {}
        with blockfmt.open(path, force_share=True, options=options) as image:
            deadline = time.monotonic() + seconds
            while not reads or time.monotonic() < deadline:
                if image.read_at(offset, length) != byte * length:
                    problems.append("the stable range read wrong bytes")
                image.read_at(0, image.size)
                reads += 1
    except BlockFormatError as err:
        problems.append(f"refused: {type(err).__name__}: {err}")
    except Exception:
        problems.append(traceback.format_exc())
    return reads, problems


def _check_after(path: Path) -> None:
    with blockfmt.open(path) as image:
        for n in range(WRITES):
            assert image.read_at(4 * MiB + n * MiB, 65536) == bytes([n + 1]) * 65536
        assert image.check().clean


@pytest.mark.parametrize("fmt", ["vhdx", "vdi"])
def test_force_share_reader_threads_beside_a_writer_thread(tmp_path, fmt) -> None:
    path = tmp_path / f"busy.{fmt}"
    _make(path, fmt)
    started = threading.Event()
    writer = threading.Thread(target=_write_all, args=(path, started))
    writer.start()
    assert started.wait(30)
    with pytest.raises(ImageLockedError, match=r'Failed to get (shared )?"write" lock'):
        blockfmt.open(path).close()
    results: list[tuple[int, list[str]]] = []
    readers = [
        threading.Thread(target=lambda: results.append(_read_loop(str(path), fmt, READ_SECONDS)))
        for _ in range(READERS)
    ]
    for reader in readers:
        reader.start()
    writer.join(60)
    for reader in readers:
        reader.join(60)
    assert not writer.is_alive() and not any(r.is_alive() for r in readers)
    assert [p for _, problems in results for p in problems] == []
    assert len(results) == READERS and all(reads >= 1 for reads, _ in results), results
    _check_after(path)


def _reader_process(path: str, fmt: str, queue: multiprocessing.Queue) -> None:
    queue.put(_read_loop(path, fmt, READ_SECONDS))


def _writer_process(path: str, started: multiprocessing.Event) -> None:
    _write_all(Path(path), started)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["vhdx", "vdi"])
def test_force_share_reader_processes_beside_a_writer_process(tmp_path, fmt) -> None:
    path = tmp_path / f"busy.{fmt}"
    _make(path, fmt)
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    queue = ctx.Queue()
    writer = ctx.Process(target=_writer_process, args=(str(path), started))
    writer.start()
    readers: list = []
    try:
        assert started.wait(60)
        readers = [ctx.Process(target=_reader_process, args=(str(path), fmt, queue)) for _ in range(READERS)]
        for reader in readers:
            reader.start()
        results = [queue.get(timeout=120) for _ in readers]
        writer.join(120)
        for reader in readers:
            reader.join(60)
    finally:
        for proc in [writer, *readers]:
            if proc.is_alive():
                proc.kill()
                proc.join()
    assert writer.exitcode == 0
    assert [p for _, problems in results for p in problems] == []
    assert all(reads >= 1 for reads, _ in results), results
    _check_after(path)
