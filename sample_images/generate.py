"""Make VHDX images with a dirty log, written by blockfmt's own log writer.

Each image is created empty, then a scripted workload runs through the VHDX plugin over a
:class:`~blockfmt.testing.faults.FaultInjectingFile`. The power is cut during the last request,
right after its log entry is written and flushed and before the entry is applied in place: the
file holds the new payload but not the BAT entries that make it visible, and only a log replay
(blockfmt's or ``qemu-img check -r all``) shows the workload's content. ``<name>.sha256`` holds
the SHA-256 of the whole virtual disk as it must read after replay, computed from the script,
not from any reader.

Run ``python sample_images/generate.py`` to rewrite ``<name>.vhdx.bz2`` and ``<name>.sha256``
beside this file; tests import :func:`generate` to rebuild them in a temporary directory.
"""

from __future__ import annotations

import bz2
import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import blockfmt
from blockfmt.fileio import OsImageFile
from blockfmt.host import default_host
from blockfmt.testing.faults import FaultInjectingFile, PowerCut

MiB = 1 << 20
HERE = Path(__file__).resolve().parent
#: the log lies at the first MiB after the header section in images blockfmt and QEMU create
LOG_OFFSET = MiB


@dataclass(frozen=True)
class Write:
    """Write *length* bytes of *byte* at *offset* of the virtual disk."""

    offset: int
    length: int
    byte: int


@dataclass(frozen=True)
class Recipe:
    """One generated image: its geometry and the writes of the workload, the last one interrupted."""

    name: str
    size: int
    block_size: int
    writes: tuple[Write, ...]

    def expected_sha256(self) -> str:
        """SHA-256 of the virtual disk after every write, from the script alone."""
        digest = hashlib.sha256()
        chunk = 4 * MiB
        for start in range(0, self.size, chunk):
            buf = bytearray(min(chunk, self.size - start))
            for write in self.writes:
                lo, hi = max(write.offset, start), min(write.offset + write.length, start + len(buf))
                if lo < hi:
                    buf[lo - start : hi - start] = bytes([write.byte]) * (hi - lo)
            digest.update(buf)
        return digest.hexdigest()


def _recipes() -> tuple[Recipe, ...]:
    simple = Recipe(
        "blockfmt-dirtylog-64M",
        64 * MiB,
        MiB,
        (Write(0, 3 * MiB, 0x11), Write(5 * MiB + 512, 4096, 0x22), Write(40 * MiB, 2 * MiB + 4096, 0x33)),
    )
    # 520 MiB of 1 MiB blocks: block 511's BAT entry is the last of the first BAT sector, so the
    # write over blocks 511-512 logs two sectors (a 12 KiB entry) and shifts every later entry by
    # 4 KiB; of the 127 one-sector entries of 8 KiB that follow, the last wraps over the end of
    # the 1 MiB log (it starts at 1020 KiB).
    small = (Write(i * MiB + 4096 * (i % 7), 4096, 1 + i) for i in range(127))
    wrapped = (Write(511 * MiB + MiB // 2, MiB, 0x5A), *small)
    return (simple, Recipe("blockfmt-dirtylog-wrapped", 520 * MiB, MiB, wrapped))


RECIPES = {recipe.name: recipe for recipe in _recipes()}


class _CutAfterLogFlush(FaultInjectingFile):
    """Once armed, cut the power right after the flush that makes a log entry durable."""

    armed = False
    _logged = False

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        super().pwrite(data, offset)
        if self.armed and LOG_OFFSET <= offset < 2 * LOG_OFFSET:
            self._logged = True

    def flush(self) -> None:
        super().flush()
        if self._logged:
            self.cut_after = self.operations


def generate(name: str, directory: Path) -> tuple[Path, str]:
    """Build image *name* in *directory*; return its path and the expected content digest."""
    recipe = RECIPES[name]
    path = directory / f"{name}.vhdx"
    blockfmt.create(path, "vhdx", recipe.size, block_size=recipe.block_size, log_size=MiB)
    inner = OsImageFile(str(path), read_only=False)
    try:
        faulty = _CutAfterLogFlush(inner)
        driver = default_host().open_driver("vhdx", faulty, False, {})
        *before, last = recipe.writes
        for write in before:  # each write its own log transaction, as a flush after every request gives
            driver.write(write.offset, memoryview(bytes([write.byte]) * write.length))
            driver.flush()
        faulty.armed = True
        try:
            driver.write(last.offset, memoryview(bytes([last.byte]) * last.length))
            driver.flush()
        except PowerCut:
            pass
        else:
            raise AssertionError("the last write never reached the log")
        inner.flush()
    finally:
        inner.close()
    return path, recipe.expected_sha256()


def _compress(path: Path, target: Path) -> None:
    with open(path, "rb") as src, bz2.open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, MiB)


def main(argv: list[str]) -> int:
    """Regenerate every image (or those named in *argv*) beside this file."""
    import tempfile

    for name in argv or list(RECIPES):
        with tempfile.TemporaryDirectory() as temp:
            path, digest = generate(name, Path(temp))
            _compress(path, HERE / f"{name}.vhdx.bz2")
        (HERE / f"{name}.sha256").write_text(f"{digest}  {name}.vhdx (virtual disk after log replay)\n")
        print(f"{name}: {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
