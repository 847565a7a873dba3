"""Power cuts and kills during writes into a differencing VHDX (the crash sweep of tests/vhdx_log,
extended to children).

A write into a child allocates a payload block and, in a new chunk, a sector bitmap block, writes the
data, and commits BAT entries and bitmap bits in one log transaction. The sweep cuts the child's
I/O after every write or flush of a workload, under the three loss policies of
:mod:`blockfmt.testing.faults`; after each cut the child is reopened read-write (replaying its log)
on the untouched parent, and every request flushed before the cut must read back while the one in
flight reads, sector by sector, its old or its new bytes. The kill test does the same with a real
process killed by SIGKILL at random moments.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import blockfmt
from blockfmt.chain import BackingView
from blockfmt.driver import FormatDriver
from blockfmt.testing.faults import LoseUnflushed, run_until_power_cut

from .peers import read_libvhdi

MiB = 1 << 20
SECTOR = 512
SIZE = 12 * MiB
PARENT_BYTE = 0xEE

#: (offset, length, byte) requests, each flushed: sector runs starting and ending mid-byte of the
#: bitmap, unaligned bytes (widened with the parent's), writes over several blocks, rewrites of
#: PARTIALLY_PRESENT blocks, zeros written over the parent
WORKLOAD: tuple[tuple[int, int, int], ...] = (
    (3 * SECTOR, 10 * SECTOR, 0x11),
    (MiB - 4096, 8192, 0x22),
    (5 * MiB + 100, 1000, 0x33),
    (2 * MiB, 3 * MiB, 0x44),
    (7 * SECTOR, 2 * SECTOR, 0x55),
    (9 * MiB + 17 * SECTOR, 5 * SECTOR + 3, 0x00),
    (11 * MiB, MiB, 0x66),
    (6 * MiB - SECTOR, 2 * SECTOR, 0x77),
)


def model(done: int) -> bytearray:
    disk = bytearray([PARENT_BYTE]) * SIZE
    for offset, length, byte in WORKLOAD[:done]:
        disk[offset : offset + length] = bytes([byte]) * length
    return disk


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("diffcrash")
    parent, child = directory / "parent.vhdx", directory / "child.avhdx"
    blockfmt.create(parent, "vhdx", SIZE, block_size=MiB)
    with blockfmt.open(parent, read_only=False) as image:
        image.write_at(0, bytes([PARENT_BYTE]) * SIZE)
    blockfmt.create(child, "vhdx", None, backing_file=parent.name)
    return parent, child


def run_workload(
    parent: Path, child: Path, cut_after: int | None, lose: LoseUnflushed, seed: int
) -> tuple[int, int]:
    """Write the workload into *child* on *parent* until the cut; (requests flushed, operations)."""
    requests = [
        functools.partial(_write, offset, bytes([byte]) * length) for offset, length, byte in WORKLOAD
    ]
    with blockfmt.open(parent) as base:

        def attach(driver: FormatDriver) -> None:
            driver.backing = BackingView(base)

        return run_until_power_cut(
            str(child), "vhdx", requests, cut_after=cut_after, lose=lose, seed=seed, prepare=attach
        )


def _write(offset: int, data: bytes, driver: FormatDriver) -> None:
    driver.write(offset, memoryview(data))


def first_difference(actual: bytes, expected: bytes | bytearray) -> int:
    """The first byte where two equally long buffers differ (a compact failure message: pytest's
    own diff of two 12 MiB buffers takes minutes)."""
    step = 1 << 16
    at = next(at for at in range(0, len(actual), step) if actual[at : at + step] != expected[at : at + step])
    return next(i for i in range(at, at + step) if actual[i] != expected[i])


def verify(parent: Path, child: Path, done: int) -> None:
    with blockfmt.open(child, read_only=False) as image:  # replays the child's log
        actual = image.read_at(0, SIZE)
        assert image.check().clean
    old = model(done)
    if done == len(WORKLOAD):
        assert actual == old, f"flushed requests lost from byte {first_difference(actual, old)}"
        return
    new = model(done + 1)
    offset, length, _ = WORKLOAD[done]
    lo, hi = offset - offset % SECTOR, -(-(offset + length) // SECTOR) * SECTOR
    assert actual[:lo] == old[:lo] and actual[hi:] == old[hi:], f"bytes outside request {done} changed"
    for at in range(lo, hi, SECTOR):
        assert actual[at : at + SECTOR] in (old[at : at + SECTOR], new[at : at + SECTOR]), at


def copy_chain(chain: tuple[Path, Path], directory: Path) -> tuple[Path, Path]:
    """The pristine parent and child, copied side by side (the child names its parent relatively)."""
    return shutil.copyfile(chain[0], directory / "parent.vhdx"), shutil.copyfile(
        chain[1], directory / "pristine.avhdx"
    )


def sweep(chain: tuple[Path, Path], tmp_path: Path, pick: Callable[[int], bool]) -> tuple[int, int]:
    parent, child = copy_chain(chain, tmp_path)
    scratch = shutil.copyfile(child, tmp_path / "count.avhdx")
    total = run_workload(parent, scratch, None, LoseUnflushed.NONE, 0)[1]
    tested = 0
    for cut in range(total):
        if not pick(cut):
            continue
        for index, lose in enumerate(LoseUnflushed):
            path = shutil.copyfile(child, tmp_path / "child.avhdx")
            done, _ = run_workload(parent, path, cut, lose, seed=cut * 3 + index)
            verify(parent, path, done)
            tested += 1
    print(f"differencing crash sweep: {total} write/flush operations, {tested} cuts tested")
    return total, tested


def test_workload_reads_back_in_both_peers(chain, tmp_path):
    parent, child = copy_chain(chain, tmp_path)
    path = shutil.copyfile(child, tmp_path / "child.avhdx")
    assert run_workload(parent, path, None, LoseUnflushed.NONE, 0)[0] == len(WORKLOAD)
    verify(parent, path, len(WORKLOAD))
    assert read_libvhdi([parent, path], SIZE) == model(len(WORKLOAD))


def test_power_cut_subset(chain, tmp_path):
    """Every 7th cut point under all three loss policies (every cut is the slow test below)."""
    total, tested = sweep(chain, tmp_path, lambda cut: cut % 7 == 2)
    assert total > 40 and tested >= 3 * (total // 7)


@pytest.mark.slow
def test_power_cut_every_operation(chain, tmp_path):
    total, tested = sweep(chain, tmp_path, lambda cut: True)
    assert tested == 3 * total


WRITER = """
import sys, blockfmt
child, start = sys.argv[1], int(sys.argv[2])
with blockfmt.open(child, read_only=False) as image:
    for i in range(start, 10**6):
        offset = (i * 7919 * 512 + (i % 8) * 64) % ({size} - 8192)
        image.write_at(offset, bytes([i % 250 + 1]) * (1000 + i % 5000))
        image.flush()
        sys.stdout.write(f"{{i}} {{offset}}\\n")  # one write: an acknowledgement is a whole line
        sys.stdout.flush()
"""


def test_kill_during_differencing_writes(chain, tmp_path):
    """SIGKILL a writer at random moments; every acknowledged (flushed) write must read back."""
    _, child = copy_chain(chain, tmp_path)
    path = shutil.copyfile(child, tmp_path / "child.avhdx")
    expected = model(0)
    rng = random.Random(16)
    start = kills = 0
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER.format(size=SIZE), str(path), str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # started and acknowledged one write: now kill it any time
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        # read on through the same text stream: readline() may have buffered more acknowledgements,
        # which communicate() would skip (with a timeout it reads the raw pipe)
        out = first + proc.stdout.read()
        proc.stdout.close()
        proc.wait(timeout=30)
        kills += 1
        # a line cut short by the kill (PYTHONUNBUFFERED splits writes) was never acknowledged
        complete = out[: out.rfind("\n") + 1]
        acknowledged = [tuple(map(int, line.split())) for line in complete.splitlines()]
        with blockfmt.open(path, read_only=False) as image:
            for i, offset in acknowledged:
                expected[offset : offset + 1000 + i % 5000] = bytes([i % 250 + 1]) * (1000 + i % 5000)
            actual = image.read_at(0, SIZE)
            assert image.check().clean
        in_flight = acknowledged[-1][0] + 1 if acknowledged else start
        offset = (in_flight * 7919 * 512 + (in_flight % 8) * 64) % (SIZE - 8192)
        length = 1000 + in_flight % 5000
        # the write in flight reads, sector by sector, as before or as written; all else is exact
        new = bytes([in_flight % 250 + 1]) * length
        lo, hi = offset - offset % SECTOR, -(-(offset + length) // SECTOR) * SECTOR
        after = bytearray(expected)
        after[offset : offset + length] = new
        for at in range(lo, hi, SECTOR):
            assert actual[at : at + SECTOR] in (expected[at : at + SECTOR], after[at : at + SECTOR]), at
        expected[lo:hi] = actual[lo:hi]
        assert actual == expected, f"acknowledged writes lost from byte {first_difference(actual, expected)}"
        start = in_flight + 1
    print(f"differencing kill test: {kills} kills, {start} writes issued")
    assert start > kills
