"""Power cuts during ``commit``: the parent stays a valid image at every step (QEMU checks it), reads
each sector as before or as the child has it, and the chain still reads exactly as before."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest

import blockfmt
from blockfmt.commit import copy_child
from blockfmt.testing.faults import LoseUnflushed, run_until_power_cut
from blockfmt.testing.qemu import run_tool

MiB = 1 << 20
SECTOR = 512
SIZE = 10 * MiB
CHILD_WRITES = (
    (3 * SECTOR, 10 * SECTOR, 0x31),
    (MiB - 4096, 8192, 0x32),
    (4 * MiB, 2 * MiB, 0x33),
    (9 * MiB + 7, 100, 0x34),
)


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> tuple[Path, Path, bytes, bytes]:
    directory = tmp_path_factory.mktemp("commitcrash")
    parent, child = directory / "parent.vhdx", directory / "child.avhdx"
    blockfmt.create(parent, "vhdx", SIZE, block_size=MiB)
    with blockfmt.open(parent, read_only=False) as image:
        image.write_at(0, b"\x5a" * 3 * MiB)
        before = image.read_at(0, SIZE)
    blockfmt.create(child, "vhdx", None, backing_file=parent.name)
    with blockfmt.open(child, read_only=False) as image:
        for offset, length, byte in CHILD_WRITES:
            image.write_at(offset, bytes([byte]) * length)
    with blockfmt.open(child) as image:
        after = image.read_at(0, SIZE)
    return parent, child, before, after


def interrupted_commit(parent: Path, child: Path, cut: int | None, lose: LoseUnflushed, seed: int) -> int:
    with blockfmt.open(child, open_backing=False) as alone:
        return run_until_power_cut(
            str(parent), "vhdx", [functools.partial(copy_child, alone)], cut_after=cut, lose=lose, seed=seed
        )[1]


@pytest.mark.qemu
def test_power_cut_during_commit_leaves_a_valid_parent(chain, tmp_path, qemu_img):
    parent, child, before, after = chain
    total = interrupted_commit(
        shutil.copyfile(parent, tmp_path / "parent.vhdx"),
        shutil.copyfile(child, tmp_path / "child.avhdx"),
        None,
        LoseUnflushed.NONE,
        0,
    )
    tested = 0
    for cut in range(0, total, 3):
        for index, lose in enumerate(LoseUnflushed):
            p = shutil.copyfile(parent, tmp_path / "parent.vhdx")
            c = shutil.copyfile(child, tmp_path / "child.avhdx")
            interrupted_commit(p, c, cut, lose, cut * 3 + index)
            with blockfmt.open(p, read_only=False) as image:  # replays the parent's log
                actual = image.read_at(0, SIZE)
            for at in range(0, SIZE, SECTOR):
                assert actual[at : at + SECTOR] in (before[at : at + SECTOR], after[at : at + SECTOR]), at
            check = run_tool([qemu_img, "check", "-f", "vhdx", str(p)])
            assert check.returncode == 0 and "No errors were found" in check.stdout, check.output
            with blockfmt.open(c, ignore_id_mismatch=True) as image:  # the parent's identity moved on
                assert image.read_at(0, SIZE) == after
            tested += 1
    print(f"commit crash sweep: {total} parent write/flush operations, {tested} cuts tested")
    assert tested >= 3 * (total // 3)
