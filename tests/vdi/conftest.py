"""Helpers for the VDI tests: seeded workloads, a write-counting file, qemu tool wrappers."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from blockfmt.fileio import OsImageFile
from blockfmt.testing.qemu import run_tool

MIB = 1 << 20


@dataclass(frozen=True)
class Write:
    offset: int
    length: int
    pattern: int


def random_writes(seed: int, size: int, count: int, max_length: int = 3 * MIB) -> list[Write]:
    """Seeded writes at unaligned offsets and lengths, many of them crossing block boundaries."""
    rng = random.Random(seed)
    writes = []
    for _ in range(count):
        length = rng.randint(1, max_length)
        offset = rng.randint(0, size - length)
        writes.append(Write(offset, length, rng.randint(1, 255)))
    return writes


def apply_to_reference(reference: bytearray, writes: list[Write]) -> None:
    for w in writes:
        reference[w.offset : w.offset + w.length] = bytes([w.pattern]) * w.length


def entries(path: Path, count: int) -> list[int]:
    """The first *count* block map entries of a QEMU-layout image (map at 0x200)."""
    with open(path, "rb") as f:
        f.seek(0x200)
        return list(struct.unpack(f"<{count}I", f.read(4 * count)))


def allocated_count(path: Path) -> int:
    """The header's ``blocks_allocated`` (offset 388)."""
    with open(path, "rb") as f:
        f.seek(388)
        return struct.unpack("<I", f.read(4))[0]


def qemu_io_write(qemu_io: str, path: Path, writes: list[Write]) -> None:
    argv = [qemu_io, "-f", "vdi"]
    for w in writes:
        argv += ["-c", f"write -P {w.pattern:#x} {w.offset} {w.length}"]
    result = run_tool([*argv, str(path)])
    assert result.returncode == 0, result.output
    assert "wrote" in result.stdout and "error" not in result.output.lower(), result.output


def qemu_img_ok(qemu_img: str, *args: str) -> str:
    result = run_tool([qemu_img, *args])
    assert result.returncode == 0, result.output
    return result.stdout


class CountingFile(OsImageFile):
    """An OsImageFile that records every pwrite as ``(offset, length)``."""

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        super().__init__(path, read_only=read_only)
        self.writes: list[tuple[int, int]] = []
        self.reads: list[tuple[int, int]] = []

    def pwrite(self, data, offset: int) -> None:  # type: ignore[no-untyped-def]
        self.writes.append((offset, len(memoryview(data).cast("B"))))
        super().pwrite(data, offset)

    def preadinto(self, buf, offset: int) -> int:  # type: ignore[no-untyped-def]
        self.reads.append((offset, len(memoryview(buf).cast("B"))))
        return super().preadinto(buf, offset)


@pytest.fixture
def counting_file():
    """Return a factory for :class:`CountingFile`; closes what it made."""
    made: list[CountingFile] = []

    def make(path: Path, *, read_only: bool = False) -> CountingFile:
        f = CountingFile(str(path), read_only=read_only)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()
