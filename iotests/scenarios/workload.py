"""Generated workload: seeded random writes and zero-writes, then every byte verified by pattern.

Both formats, fixed seeds, so the transcript is stable and the stored ``workload.out`` (one for
both formats) is what real QEMU prints. Writes start and end at arbitrary byte offsets, so reads cross block
boundaries unaligned (NOTES.md pitfall 2), and each batch of writes is a new qemu-io process, so
the data must survive close and reopen. The image ends with ``check`` and ``info``.
"""

from __future__ import annotations

import random

from iotests.context import TestContext

FORMATS = ("vdi", "vhdx")
GROUPS = ("rw", "quick", "workload")

MiB = 1 << 20
DISK_SIZE = 64 * MiB
SEEDS = (1, 2)
OPS_PER_SEED = 24
OPS_PER_PROCESS = 8
MAX_OP_LENGTH = 3 * MiB
#: small blocks give a 64 MiB VHDX many blocks to allocate (the default would be 8 MiB)
CREATE_OPTIONS = {"vhdx": ("-o", "block_size=1M"), "vdi": ()}
ZERO = 0

Run = tuple[int, int, int]  # start, end, pattern byte


def paint(runs: list[Run], start: int, end: int, pattern: int) -> list[Run]:
    """Overlay ``[start, end)`` with *pattern* on the sorted, gap-free run list."""
    result: list[Run] = []
    for run_start, run_end, value in runs:
        if run_end <= start or run_start >= end:
            result.append((run_start, run_end, value))
            continue
        if run_start < start:
            result.append((run_start, start, value))
        if run_end > end:
            result.append((end, run_end, value))
    result.append((start, end, pattern))
    result.sort()
    merged: list[Run] = []
    for run in result:
        if merged and merged[-1][2] == run[2] and merged[-1][1] == run[0]:
            merged[-1] = (merged[-1][0], run[1], run[2])
        else:
            merged.append(run)
    return merged


def generate(seed: int) -> list[tuple[str, int, int, int]]:
    """The seeded operations: ``(kind, offset, length, pattern)`` with kind ``write`` or ``zero``."""
    rng = random.Random(seed)
    ops = []
    for _ in range(OPS_PER_SEED):
        length = rng.randrange(1, MAX_OP_LENGTH)
        offset = rng.randrange(0, DISK_SIZE - length)
        if rng.random() < 0.2:
            ops.append(("zero", offset, length, ZERO))
        else:
            ops.append(("write", offset, length, rng.randrange(1, 256)))
    return ops


def run(t: TestContext) -> None:
    t.echo("QA output created by workload")
    t.make_test_img(str(DISK_SIZE), *CREATE_OPTIONS[t.imgfmt])
    runs: list[Run] = [(0, DISK_SIZE, ZERO)]
    for seed in SEEDS:
        t.echo()
        t.echo(f"=== Seed {seed}: {OPS_PER_SEED} writes ===")
        ops = generate(seed)
        for first in range(0, len(ops), OPS_PER_PROCESS):
            commands = []
            for kind, offset, length, pattern in ops[first : first + OPS_PER_PROCESS]:
                if kind == "zero":
                    commands.append(f"write -z {offset} {length}")
                else:
                    commands.append(f"write -P 0x{pattern:02x} {offset} {length}")
                runs = paint(runs, offset, offset + length, pattern)
            t.qemu_io(*commands)
        t.echo()
        t.echo(f"=== Seed {seed}: verify every byte ({len(runs)} runs) ===")
        t.qemu_io(
            *(f"read -P 0x{value:02x} {start} {end - start}" for start, end, value in runs), read_only=True
        )
    t.echo()
    t.echo("=== Check and info ===")
    t.qemu_img("check", "-f", t.imgfmt, t.test_img)
    t.img_info()
    t.echo("*** done")
