"""Chains built through the public API, with the bytes every layer should read (the model)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import blockfmt

MiB = 1 << 20

#: (offset, length, byte) writes, one tuple per layer (base first)
Writes = Sequence[tuple[int, int, int]]


@dataclass(frozen=True)
class Chain:
    """Paths top last, and what the top reads."""

    paths: tuple[Path, ...]
    expected: bytes

    @property
    def top(self) -> Path:
        return self.paths[-1]


def build_chain(
    directory: Path,
    fmt: str,
    size: int,
    layers: Sequence[Writes],
    suffix: str = "",
    **create_options: int,
) -> Chain:
    """Create a base and ``len(layers) - 1`` children, each child on the one before, writing each
    layer's writes through the chain; :attr:`Chain.expected` is the model of the top."""
    disk = bytearray(size)
    paths: list[Path] = []
    for depth, writes in enumerate(layers):
        ext = fmt if depth == 0 or not suffix else suffix
        path = directory / f"layer{depth}.{ext}"
        if depth == 0:
            blockfmt.create(path, fmt, size, **create_options)
        else:
            blockfmt.create(path, fmt, None, backing_file=paths[-1].name, backing_fmt=fmt)
        with blockfmt.open(path, read_only=False) as image:
            for offset, length, byte in writes:
                image.write_at(offset, bytes([byte]) * length)
                disk[offset : offset + length] = bytes([byte]) * length
        paths.append(path)
    return Chain(tuple(paths), bytes(disk))
