"""check paths the suite and the fuzz corpus did not reach (issue 19, branch coverage): a run of
blocks stored one after the other whose last block the end of file cuts short."""

from __future__ import annotations

from pathlib import Path

import blockfmt

MiB = 1 << 20


def test_run_cut_by_end_of_file_keeps_its_good_blocks(tmp_path: Path) -> None:
    path = tmp_path / "cut.vhdx"
    blockfmt.create(path, "vhdx", 8 * MiB, block_size=MiB)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(0, b"\x42" * (3 * MiB))  # blocks 0-2, stored one after the other
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - MiB // 2)
    message = (
        f"VHDX BAT entry 2 end offset {size - 1} points after end of file ({size - MiB // 2}). "
        "Image has probably been truncated."
    )
    with blockfmt.open(path) as img:
        result = img.check()
    assert (result.corruptions, result.messages) == (1, [message])
    with blockfmt.open(path, read_only=False) as img:
        fixed = img.check("all")
        assert (fixed.corruptions, fixed.corruptions_fixed) == (0, 1)
        assert img.read_at(0, 2 * MiB) == b"\x42" * (2 * MiB)
        assert img.read_at(2 * MiB, MiB).count(0) == MiB
        assert img.check().clean
