"""Power-cut sweep: cut the VHDX plugin's I/O after every write or flush of a workload (NOTES.md #10).

The workload is a list of requests; a request is one or more operations followed by one flush, so
some requests allocate several blocks that reach the BAT in a single log transaction. After each cut
the file is reopened read-write (which replays the log), ``qemu-img check`` must find no errors,
every request flushed before the cut must read back, and the request in flight must read, sector by
sector, either its old or its new bytes, never anything else.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import blockfmt
from blockfmt.driver import FormatDriver
from blockfmt.testing.faults import LoseUnflushed, run_until_power_cut
from blockfmt.testing.qemu import run_tool

MiB = 1 << 20
SECTOR = 512
DISK_SIZE = 40 * MiB


@dataclass(frozen=True)
class Op:
    """One request of the workload and the bytes its range holds afterwards (None: zeros)."""

    kind: str
    offset: int
    length: int
    byte: int | None = None

    def apply(self, driver: FormatDriver) -> None:
        if self.kind == "write":
            assert self.byte is not None
            driver.write(self.offset, memoryview(bytes([self.byte]) * self.length))
        elif self.kind == "zero":
            driver.write_zeroes(self.offset, self.length, unmap=True)
        else:
            driver.discard(self.offset, self.length)

    def after(self) -> bytes:
        return bytes([self.byte or 0]) * self.length


Request = tuple[Op, ...]

WORKLOAD: tuple[Request, ...] = (
    (Op("write", 0, MiB + MiB // 2, 0x11),),  # allocates two blocks
    (Op("write", MiB - 4096, 8192, 0x22),),  # overwrite across a block boundary
    (Op("zero", 2 * MiB, 2 * MiB),),  # whole blocks become ZERO
    (Op("write", 10 * MiB + SECTOR, 4096, 0x33),),  # unaligned allocating write
    (Op("discard", 0, MiB),),  # block 0 unmapped, its space punched
    (Op("write", 30 * MiB - 4096, 2 * MiB + 8192, 0x44),),  # allocates four blocks
    (Op("zero", 30 * MiB, MiB),),
    (Op("write", 3 * MiB, 4096, 0x55),),  # allocates a block that was ZERO
    (Op("write", 0, 4096, 0x66),),  # reallocates the discarded block
    (Op("write", 10 * MiB, 8192, 0x77),),  # overwrite in place
    (Op("write", 20 * MiB, 3 * MiB, 0x88),),  # allocates three blocks
    (Op("discard", 20 * MiB, 2 * MiB),),
    (Op("write", 15 * MiB + 100 * SECTOR, 4096, 0x99),),
    # several allocating writes whose BAT entries share one log transaction, one of them in a
    # BAT sector with entries of other requests (NOTES.md #4)
    (
        Op("write", 5 * MiB + 4096, 4096, 0xA1),
        Op("write", 7 * MiB, MiB, 0xA2),
        Op("write", 36 * MiB - SECTOR, 2 * SECTOR, 0xA3),
        Op("write", 10 * MiB + 4096, 4096, 0xA4),  # in place, beside the allocations
    ),
    (Op("write", 25 * MiB, 4096, 0xB1), Op("zero", 30 * MiB, 2 * MiB), Op("write", 26 * MiB, 8192, 0xB2)),
)


def model(requests: tuple[Request, ...]) -> bytearray:
    disk = bytearray(DISK_SIZE)
    for request in requests:
        for op in request:
            disk[op.offset : op.offset + op.length] = op.after()
    return disk


@pytest.fixture(scope="module")
def base_image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("crash") / "base.vhdx"
    blockfmt.create(path, "vhdx", DISK_SIZE, block_size=MiB)
    return path


def run_workload(path: Path, cut_after: int | None, lose: LoseUnflushed, seed: int = 0) -> tuple[int, int]:
    """Run the workload and close, until the cut; return (requests finished, operations done)."""
    requests = [functools.partial(_apply, request) for request in WORKLOAD]
    return run_until_power_cut(str(path), "vhdx", requests, cut_after=cut_after, lose=lose, seed=seed)


def _apply(request: Request, driver: FormatDriver) -> None:
    for op in request:
        op.apply(driver)


def verify(path: Path, done: int, qemu_img: str) -> None:
    with blockfmt.open(path, read_only=False) as image:
        actual = image.read_at(0, DISK_SIZE)
    old = model(WORKLOAD[:done])
    if done == len(WORKLOAD):
        assert actual == old
    else:
        new = model(WORKLOAD[: done + 1])
        outside = bytearray(actual)
        for op in WORKLOAD[done]:
            outside[op.offset : op.offset + op.length] = old[op.offset : op.offset + op.length]
        assert outside == old, f"bytes outside request {done} changed"
        for op in WORKLOAD[done]:
            for at in range(op.offset, op.offset + op.length, SECTOR):
                sector = actual[at : at + SECTOR]
                assert sector in (old[at : at + SECTOR], new[at : at + SECTOR]), (
                    f"sector at {at} is neither old nor new"
                )
    result = run_tool([qemu_img, "check", "-f", "vhdx", str(path)])
    assert result.returncode == 0 and "No errors were found on the image." in result.output, result.output


def sweep(base_image: Path, tmp_path: Path, qemu_img: str, pick: Callable[[int], bool]) -> int:
    total = run_workload(shutil.copyfile(base_image, tmp_path / "count.vhdx"), None, LoseUnflushed.NONE)[1]
    policies = list(LoseUnflushed)
    tested = 0
    for cut in range(total):
        if not pick(cut):
            continue
        for index, lose in enumerate(policies):
            path = shutil.copyfile(base_image, tmp_path / f"cut{cut}-{lose.value}.vhdx")
            done, _ = run_workload(path, cut, lose, seed=cut * len(policies) + index)
            verify(path, done, qemu_img)
            path.unlink()
            tested += 1
    print(f"crash sweep: {total} write/flush operations in the workload, {tested} cut points tested")
    return tested


@pytest.mark.qemu
def test_workload_without_cut_reads_back(base_image, tmp_path, qemu_img):
    path = shutil.copyfile(base_image, tmp_path / "full.vhdx")
    done, operations = run_workload(path, None, LoseUnflushed.NONE)
    assert done == len(WORKLOAD) and operations > 50
    verify(path, done, qemu_img)


@pytest.mark.qemu
def test_power_cut_subset(base_image, tmp_path, qemu_img):
    """Every 11th cut point under all three loss policies (the full sweep is marked slow)."""
    assert sweep(base_image, tmp_path, qemu_img, lambda cut: cut % 11 == 4) >= 27


@pytest.mark.qemu
@pytest.mark.slow
def test_power_cut_every_operation(base_image, tmp_path, qemu_img):
    assert sweep(base_image, tmp_path, qemu_img, lambda cut: True) >= 300
