"""Seeded random workloads applied to a VHDX (through blockfmt or qemu-io) and to a raw reference."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import blockfmt

MiB = 1 << 20
#: bytes of the virtual disk covered by one sector bitmap chunk with 512-byte sectors (2**23 sectors)
CHUNK_SPAN_512 = (1 << 23) * 512
#: whole-block zero/discard requests only for blocks up to this size, to keep the default run short
WHOLE_BLOCK_OPS_MAX = 8 * MiB


@dataclass(frozen=True)
class Op:
    """One request: ``write`` a byte pattern, ``zero`` a range or ``discard`` it."""

    kind: str
    offset: int
    length: int
    byte: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.length


def random_ops(
    seed: int,
    size: int,
    block_size: int,
    count: int = 40,
    kinds: tuple[str, ...] = ("write", "zero", "discard"),
) -> list[Op]:
    """Unaligned, block-crossing and chunk-crossing requests, with overwrites (same seed, same ops)."""
    rng = random.Random(seed)
    hot = [b * block_size for b in range(1, size // block_size + 1)] + [CHUNK_SPAN_512] * 3
    hot = [h for h in hot if h < size] or [size // 2]
    ops: list[Op] = []
    for _ in range(count):
        kind = rng.choice(kinds) if rng.random() < 0.35 else "write"
        if rng.random() < 0.6:  # straddle a block or chunk boundary
            offset = max(0, rng.choice(hot) - rng.randrange(1, 3 * MiB // 2))
        else:
            offset = rng.randrange(0, size)
        length = min(rng.randrange(1, 3 * MiB), size - offset)
        if kind != "write" and block_size <= WHOLE_BLOCK_OPS_MAX and rng.random() < 0.5:  # whole blocks
            offset = offset // block_size * block_size
            length = min(block_size * rng.randrange(1, 3), size - offset)
        if length > 0:
            ops.append(Op(kind, offset, length, rng.randrange(1, 256)))
    return ops


def apply_to_image(img: blockfmt.Image, ops: list[Op]) -> None:
    for op in ops:
        if op.kind == "write":
            img.write_at(op.offset, bytes([op.byte]) * op.length)
        elif op.kind == "zero":
            img.write_zeroes(op.offset, op.length)
        else:
            img.discard(op.offset, op.length)


def discarded_range(op: Op, block_size: int, size: int, fixed: bool) -> tuple[int, int]:
    """What blockfmt's discard turns to zeros: the whole blocks inside the range (none when fixed)."""
    if fixed:
        return (0, 0)
    start = -(-op.offset // block_size) * block_size
    end = size if op.end == size else op.end // block_size * block_size
    return (start, max(start, end))


def apply_to_raw(path: Path, ops: list[Op], block_size: int, size: int, *, fixed: bool = False) -> None:
    """The same workload on a raw file, with blockfmt's discard semantics."""
    fd = os.open(path, os.O_RDWR)
    try:
        for op in ops:
            if op.kind == "write":
                os.pwrite(fd, bytes([op.byte]) * op.length, op.offset)
            elif op.kind == "zero":
                os.pwrite(fd, bytes(op.length), op.offset)
            else:
                start, end = discarded_range(op, block_size, size, fixed)
                os.pwrite(fd, bytes(end - start), start)
    finally:
        os.close(fd)


def qemu_io_commands(ops: list[Op]) -> list[str]:
    """qemu-io ``-c`` arguments for *ops* (writes and zero writes only: QEMU's vhdx has no discard)."""
    args: list[str] = []
    for op in ops:
        if op.kind == "write":
            args += ["-c", f"write -P {op.byte:#x} {op.offset} {op.length}"]
        elif op.kind == "zero":
            args += ["-c", f"write -z {op.offset} {op.length}"]
    return args


def make_raw(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def probe_ranges(ops: list[Op], size: int, block_size: int, seed: int) -> list[tuple[int, int]]:
    """Ranges worth reading back: around every request, across block and chunk boundaries, at random."""
    rng = random.Random(seed ^ 0x5EED)
    ranges = [(max(0, op.offset - 4097), min(size, op.end + 4097)) for op in ops]
    for boundary in (block_size, 2 * block_size, CHUNK_SPAN_512):
        if boundary < size:
            ranges.append((max(0, boundary - MiB - 511), min(size, boundary + MiB + 3)))
    for _ in range(10):
        start = rng.randrange(0, size)
        ranges.append((start, min(size, start + rng.randrange(1, 2 * MiB))))
    ranges.append((max(0, size - MiB - 1), size))
    return ranges


def assert_same_as_raw(img: blockfmt.Image, raw: Path, ranges: list[tuple[int, int]]) -> None:
    with open(raw, "rb") as ref:
        for start, end in ranges:
            ref.seek(start)
            expected = ref.read(end - start)
            got = img.read_at(start, end - start)
            if got != expected:
                first = next(i for i in range(len(got)) if got[i] != expected[i])
                raise AssertionError(f"range {start}-{end} differs first at {start + first}")
