"""Valid images to mutate: made by qemu-img + qemu-io, by blockfmt itself, and the shared samples."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import blockfmt
from blockfmt.errors import BlockFormatError
from blockfmt.testing.fuzz import Seed, SparseBytes
from blockfmt.testing.qemu import run_tool

from .layouts import LAYOUTS

MiB = 1 << 20
SHARED_SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "sample_images"

#: name -> (format, qemu-img create arguments, qemu-io commands); small, so a case costs milliseconds
QEMU_SEEDS = {
    "qemu-vhdx-dynamic": (
        "vhdx",
        ["-o", "block_size=1M", "8M"],
        ["write -P 0xa5 0 1536k", "write -P 0x5a 5M 512"],
    ),
    "qemu-vhdx-fixed": ("vhdx", ["-o", "subformat=fixed,block_size=1M", "3M"], ["write -P 0x96 1M 4k"]),
    "qemu-vdi-dynamic": ("vdi", ["8M"], ["write -P 0xa5 0 1536k", "write -P 0x5a 5M 512"]),
    "qemu-vdi-static": ("vdi", ["-o", "static=on", "3M"], ["write -P 0x96 1M 4k"]),
}
#: shared samples for the sweep: a log to replay, a Hyper-V dynamic disk, a Disk2VHD image
SAMPLE_SEEDS = {
    "iotest-dirtylog-10G-4M": "iotest-dirtylog-10G-4M.vhdx.bz2",
    "iotest-dynamic-1G": "iotest-dynamic-1G.vhdx.bz2",
    "discutils-vhdx-log-replay": "real/discutils-vhdx-log-replay.vhdx.gz",
}


def seed_from_bytes(name: str, fmt: str, data: bytes) -> Seed:
    store = SparseBytes.from_bytes(data)
    return Seed(name, fmt, store, LAYOUTS[fmt](store))


def qemu_seed(name: str, qemu_img: str, qemu_io: str, workdir: Path) -> Seed:
    fmt, create_args, commands = QEMU_SEEDS[name]
    path = workdir / f"{name}.{fmt}"
    result = run_tool([qemu_img, "create", "-q", "-f", fmt, str(path), *create_args])
    assert result.returncode == 0, result.output
    for command in commands:
        result = run_tool([qemu_io, "-f", fmt, "-c", command, str(path)])
        assert result.returncode == 0, result.output
    return seed_from_bytes(name, fmt, path.read_bytes())


def blockfmt_seed(fmt: str, workdir: Path) -> Seed | None:
    """An image blockfmt creates and writes itself; None while the plugin cannot do that yet."""
    path = workdir / f"blockfmt.{fmt}"
    try:
        blockfmt.create(path, fmt, 8 * MiB, **({"block_size": MiB} if fmt == "vhdx" else {}))
        with blockfmt.open(path, fmt, read_only=False) as image:
            image.write_at(0, b"\xa5" * (3 * MiB // 2))
            image.write_at(5 * MiB, b"\x5a" * 512)
    except BlockFormatError:
        return None
    return seed_from_bytes(f"blockfmt-{fmt}", fmt, path.read_bytes())


def sample_seed(name: str) -> Seed | None:
    path = SHARED_SAMPLES / SAMPLE_SEEDS[name]
    if not path.exists():
        return None
    opener = bz2.open if path.suffix == ".bz2" else gzip.open
    with opener(path, "rb") as src:
        return seed_from_bytes(name, "vhdx", src.read())
