"""The source disk every convert test builds, and ways to look at a converted result.

The layout mixes what a converter can get wrong: aligned and unaligned data runs, a run that was
written with zeros (allocated but zero), long never-written stretches, and data in the last
sector of the disk.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from pathlib import Path

import blockfmt
from blockfmt.testing.qemu import run_tool

KiB = 1 << 10
MiB = 1 << 20

DISK_SIZE = 64 * MiB
#: (offset, length, fill): fill None means seeded random bytes
RUNS: tuple[tuple[int, int, int | None], ...] = (
    (1 * MiB, 2 * MiB, None),
    (17 * MiB + 512, 70000, None),
    (40 * MiB, 1 * MiB, 0),
    (DISK_SIZE - 4 * KiB, 4 * KiB, None),
)
#: the run written with zeros: a converter should not copy it as data
ZERO_RUN = (40 * MiB, 41 * MiB)
HASH_CHUNK = 8 * MiB
#: granularity of a raw file's allocation (the file system block)
FS_BLOCK = 4 * KiB


def run_bytes(index: int, length: int, fill: int | None) -> bytes:
    """The bytes of run *index*: a constant fill or reproducible random data."""
    if fill is not None:
        return bytes([fill]) * length
    return random.Random(index).randbytes(length)


def build_source(path: Path, fmt: str, **options: object) -> None:
    """Create a *fmt* image at *path* holding :data:`RUNS` through blockfmt's API."""
    blockfmt.create(path, fmt, DISK_SIZE, **options)
    with blockfmt.open(path, fmt, read_only=False) as img:
        for index, (offset, length, fill) in enumerate(RUNS):
            img.write_at(offset, run_bytes(index, length, fill))


def content_digest(path: Path, fmt: str) -> str:
    """sha256 of the virtual disk, read through blockfmt."""
    digest = hashlib.sha256()
    buf = bytearray(HASH_CHUNK)
    with blockfmt.open(path, fmt) as img:
        for offset in range(0, img.size, HASH_CHUNK):
            view = memoryview(buf)[: min(HASH_CHUNK, img.size - offset)]
            img.readinto_at(offset, view)
            digest.update(view)
    return digest.hexdigest()


def blockfmt_data_ranges(path: Path, fmt: str) -> list[tuple[int, int]]:
    """``[start, end)`` of every extent blockfmt's map marks as data."""
    with blockfmt.open(path, fmt) as img:
        return [(e.offset, e.offset + e.length) for e in img.map() if e.data]


def qemu_data_ranges(qemu_img: str, path: Path, fmt: str) -> list[tuple[int, int]]:
    """``[start, end)`` of every extent ``qemu-img map --output=json`` marks as data."""
    result = run_tool([qemu_img, "map", "--output=json", "-f", fmt, str(path)])
    assert result.returncode == 0, result.output
    return [(e["start"], e["start"] + e["length"]) for e in json.loads(result.stdout) if e["data"]]


def cluster_size(path: Path, fmt: str) -> int:
    """The target's allocation unit: its cluster size, or the file system block for raw."""
    with blockfmt.open(path, fmt) as img:
        return img.info().cluster_size or FS_BLOCK


def allowed_data(source_data: Iterable[tuple[int, int]], path: Path, fmt: str) -> list[tuple[int, int]]:
    """Where a converted *fmt* target may hold data: the source's data per target cluster.

    A raw target may also hold its first file system block: raw create allocates it, as QEMU's
    file-posix does (``allocate_first_block``), so ``qemu-img convert`` output has it too.
    """
    allowed = widen(source_data, cluster_size(path, fmt))
    return [*allowed, (0, FS_BLOCK)] if fmt == "raw" else allowed


def widen(ranges: Iterable[tuple[int, int]], unit: int) -> list[tuple[int, int]]:
    """Round each range out to multiples of *unit*."""
    return [(start // unit * unit, -(-end // unit) * unit) for start, end in ranges]


def uncovered(inner: Iterable[tuple[int, int]], outer: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of *inner* ranges that no *outer* range covers (empty when inner ⊆ outer)."""
    missing = []
    for start, end in inner:
        pos = start
        for o_start, o_end in sorted(outer):
            if o_end <= pos or o_start >= end:
                continue
            if o_start > pos:
                missing.append((pos, o_start))
            pos = max(pos, o_end)
        if pos < end:
            missing.append((pos, end))
    return missing
