"""Repair is idempotent and loses no readable data, on the fuzz cases blockfmt repairs (issue 19).

For mutated images (the structure-aware mutator over the qemu-made seeds) that ``check -r all``
repairs, as files on disk:

* before: every 1 MiB block of the first :data:`COMPARED` bytes is read through blockfmt and, where
  the image opens there, through QEMU (``qemu-img dd``); a block is *consistent* when blockfmt reads
  it and QEMU either does not open the image or reads the same bytes;
* repair with blockfmt, then: the image opens in blockfmt and in QEMU (``qemu-img dd`` reads it), a
  second ``check -r all`` fixes nothing and leaves the file byte for byte as it was, and every
  consistent block reads the same through both tools.

The default run stops after a few repaired cases per format; ``-m slow`` runs
``BLOCKFMT_FUZZ_REPAIRED_CASES`` (150) per format, or as many as fit in
``BLOCKFMT_FUZZ_REPAIR_SECONDS`` per format, and prints the figures.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import BlockFormatError
from blockfmt.testing.fuzz import Seed, make_case
from blockfmt.testing.qemu import run_tool

pytestmark = pytest.mark.qemu

MiB = 1 << 20
#: virtual bytes compared per case (hostile sizes can make a disk of terabytes)
COMPARED = 16 * MiB


@dataclass
class Figures:
    """What the idempotence run counted, for the report."""

    tried: int = 0
    repaired: int = 0
    qemu_opened_before: int = 0
    opened_blockfmt_after: int = 0
    opened_qemu_after: int = 0
    second_repair_unchanged: int = 0
    blocks_compared: int = 0
    blocks_lost: int = 0
    problems: list[str] = field(default_factory=list)

    def report(self, fmt: str) -> str:
        return (
            f"repair idempotence [{fmt}]: {self.tried} cases generated, {self.repaired} repaired by "
            f"blockfmt (QEMU opened {self.qemu_opened_before} of them before repair); after repair "
            f"{self.opened_blockfmt_after} open in blockfmt, {self.opened_qemu_after} in QEMU, "
            f"{self.second_repair_unchanged} unchanged by a second repair; {self.blocks_compared} "
            f"consistent 1 MiB blocks compared, {self.blocks_lost} read differently after; "
            f"{len(self.problems)} problems"
        )


def _blockfmt_blocks(path: Path, fmt: str) -> dict[int, bytes] | None:
    """Block index -> bytes for every block blockfmt reads (None when it does not open read-only)."""
    try:
        image = blockfmt.open(path, fmt)
    except BlockFormatError:
        return None
    blocks = {}
    with image:
        for index in range(-(-min(image.size, COMPARED) // MiB)):
            length = min(MiB, image.size - index * MiB)
            try:
                blocks[index] = image.read_at(index * MiB, length)
            except BlockFormatError:
                continue
    return blocks


def _qemu_bytes(qemu_img: str, path: Path, fmt: str, workdir: Path) -> bytes | None:
    """The first :data:`COMPARED` virtual bytes as QEMU reads them (dd stops at the end of a
    smaller disk), or None when it cannot open or read them."""
    out = workdir / "qemu.raw"
    out.unlink(missing_ok=True)
    count = COMPARED // MiB
    result = run_tool(
        [qemu_img, "dd", "-U", "-f", fmt, "-O", "raw", "bs=1M", f"count={count}", f"if={path}", f"of={out}"],
        timeout=120,
    )
    if result.returncode != 0:
        return None
    return out.read_bytes()


def _repair(path: Path, fmt: str) -> blockfmt.CheckResult | None:
    try:
        with blockfmt.open(path, fmt, read_only=False) as image:
            return image.check("all")
    except BlockFormatError:
        return None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_idempotence(
    seeds: list[Seed],
    fmt: str,
    qemu_img: str,
    workdir: Path,
    *,
    repaired_wanted: int,
    max_tried: int,
    seconds: float = float("inf"),
) -> Figures:
    """Mutate, repair and compare until *repaired_wanted* cases were repaired, *max_tried* were
    generated or *seconds* have passed."""
    figures = Figures()
    rng = random.Random(19)
    path = workdir / f"case.{fmt}"
    deadline = time.monotonic() + seconds
    while figures.repaired < repaired_wanted and figures.tried < max_tried and time.monotonic() < deadline:
        case = make_case(seeds, rng.randrange(len(seeds)), rng.randrange(1 << 48))
        figures.tried += 1
        damaged = case.store.to_bytes()
        path.write_bytes(damaged)
        first = _repair(path, fmt)
        if first is None or first.corruptions_fixed == 0:
            continue
        figures.repaired += 1
        label = f"{case.seed_index}#{case.case_seed} {case.mutations}"
        path.write_bytes(damaged)  # measure the damaged image before the repair, then repair again
        ours_before = _blockfmt_blocks(path, fmt)
        theirs_before = _qemu_bytes(qemu_img, path, fmt, workdir)
        figures.qemu_opened_before += theirs_before is not None
        consistent = {
            index: data
            for index, data in (ours_before or {}).items()
            if theirs_before is None or theirs_before[index * MiB : index * MiB + len(data)] == data
        }
        _repair(path, fmt)
        repaired_digest = _digest(path)
        second = _repair(path, fmt)
        if second is None or second.corruptions_fixed or _digest(path) != repaired_digest:
            figures.problems.append(f"{label}: a second repair changed something: {second}")
        else:
            figures.second_repair_unchanged += 1
        ours_after = _blockfmt_blocks(path, fmt)
        theirs_after = _qemu_bytes(qemu_img, path, fmt, workdir)
        figures.opened_blockfmt_after += ours_after is not None
        figures.opened_qemu_after += theirs_after is not None
        if ours_after is None or theirs_after is None:
            figures.problems.append(f"{label}: the repaired image does not open in both tools")
            continue
        for index, data in consistent.items():
            figures.blocks_compared += 1
            if ours_after.get(index) != data or theirs_after[index * MiB : index * MiB + len(data)] != data:
                figures.blocks_lost += 1
                figures.problems.append(f"{label}: block {index} read consistently before, differs after")
    return figures


@pytest.mark.parametrize("fmt", ["vhdx", "vdi"])
def test_repair_is_idempotent_and_keeps_consistent_blocks(fmt, fuzz_seeds, qemu_img, tmp_path) -> None:
    figures = run_idempotence(fuzz_seeds[fmt], fmt, qemu_img, tmp_path, repaired_wanted=4, max_tried=400)
    print(figures.report(fmt))
    assert figures.repaired >= 1, figures.report(fmt)
    assert figures.problems == [], "\n".join(figures.problems)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["vhdx", "vdi"])
def test_repair_idempotence_sweep(fmt, fuzz_seeds, qemu_img, tmp_path) -> None:
    wanted = int(os.environ.get("BLOCKFMT_FUZZ_REPAIRED_CASES", "150"))
    seconds = float(os.environ.get("BLOCKFMT_FUZZ_REPAIR_SECONDS", "inf"))
    figures = run_idempotence(
        fuzz_seeds[fmt], fmt, qemu_img, tmp_path, repaired_wanted=wanted, max_tried=200 * wanted,
        seconds=seconds,
    )  # fmt: skip
    print(figures.report(fmt))
    assert figures.problems == [], "\n".join(figures.problems)
