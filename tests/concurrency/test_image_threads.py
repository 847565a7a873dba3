"""One ``Image`` used from several threads at once: every call is serialised, so it is safe.

The threads write disjoint ranges that allocate new blocks (the BAT / block map update is where
unserialised callers would race: two allocations could take the same free space) and read them
back while the others write. The thread switch interval is cut to a microsecond so the
interpreter interleaves the threads inside the drivers' Python code.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import blockfmt
from blockfmt.testing.qemu import run_tool

MiB = 1 << 20
THREADS = 4
BLOCKS_PER_THREAD = 6


@pytest.fixture
def fast_switching() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _pattern(thread: int, block: int) -> bytes:
    return bytes([(thread * 16 + block) % 251 + 1]) * 4096


def _offsets(thread: int) -> list[int]:
    """Block *block* of *thread*: interleaved, so the threads allocate neighbouring blocks."""
    return [(block * THREADS + thread) * MiB + 8192 for block in range(BLOCKS_PER_THREAD)]


def _worker(image: blockfmt.Image, thread: int) -> list[str]:
    problems = []
    for block, offset in enumerate(_offsets(thread)):
        image.write_at(offset, _pattern(thread, block))
        for earlier, at in enumerate(_offsets(thread)[: block + 1]):
            got = image.read_at(at, 4096)
            if got != _pattern(thread, earlier):
                problems.append(f"thread {thread} block {earlier} at {at} read {got[:4].hex()}...")
    return problems


@pytest.mark.parametrize(("fmt", "options"), [("vhdx", {"block_size": MiB}), ("vdi", {})])
def test_threads_sharing_one_image_allocate_write_and_read_safely(
    tmp_path, fast_switching, fmt, options
) -> None:
    path = tmp_path / f"shared.{fmt}"
    blockfmt.create(path, fmt, THREADS * BLOCKS_PER_THREAD * MiB, **options)
    with blockfmt.open(path, read_only=False) as image:
        barrier = threading.Barrier(THREADS)

        def run(thread: int) -> list[str]:
            barrier.wait()
            return _worker(image, thread)

        with ThreadPoolExecutor(THREADS) as pool:
            problems = [p for result in pool.map(run, range(THREADS)) for p in result]
        assert problems == []
        assert image.check().clean
    with blockfmt.open(path) as image:
        for thread in range(THREADS):
            for block, offset in enumerate(_offsets(thread)):
                assert image.read_at(offset, 4096) == _pattern(thread, block)
        allocated = sum(e.length for e in image.map() if e.data)
        assert allocated == THREADS * BLOCKS_PER_THREAD * MiB  # one block each, none shared


@pytest.mark.qemu
def test_image_written_by_threads_satisfies_qemu_img_check(tmp_path, fast_switching, qemu_img) -> None:
    path = tmp_path / "shared.vhdx"
    blockfmt.create(path, "vhdx", THREADS * BLOCKS_PER_THREAD * MiB, block_size=MiB)
    with blockfmt.open(path, read_only=False) as image, ThreadPoolExecutor(THREADS) as pool:
        assert [p for r in pool.map(lambda t: _worker(image, t), range(THREADS)) for p in r] == []
    result = run_tool([qemu_img, "check", "-f", "vhdx", str(path)])
    assert result.returncode == 0, result.output
