"""QEMU 7.2 bugs blockfmt must not copy, each shown beside blockfmt's behaviour (issue 19).

Every test here asserts QEMU's wrong outcome *and* blockfmt's right one on the same input; the
``qemu_bug`` marker says which half is the bug. When a newer QEMU fixes one, its test fails and
the pin is removed, rather than the test being skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

import blockfmt
from blockfmt.testing.qemu import run_tool
from blockfmt_vhdx.log_structs import LOG_SECTOR_SIZE

from ..vhdx_log.entries import build_entry, put_in_log
from ..vhdx_log.headers import current_header, set_log_guid

pytestmark = [pytest.mark.qemu, pytest.mark.qemu_bug]

MiB = 1 << 20
#: 4097 MiB: the default 32 MiB blocks leave the last block 1 MiB into the disk
FIXED_SIZE = "4097M"
FIXED_OPTIONS = "subformat=fixed,block_state_zero=off"


def test_fixed_image_with_a_partial_last_block(tmp_path, qemu_img, qemu_io):
    """QEMU's create sizes the file to the disk, not to the last block's end, then its own open
    refuses the last BAT entry; blockfmt preallocates whole blocks, which both tools open."""
    theirs, ours = tmp_path / "qemu.vhdx", tmp_path / "blockfmt.vhdx"
    made = run_tool([qemu_img, "create", "-f", "vhdx", "-o", FIXED_OPTIONS, str(theirs), FIXED_SIZE])
    assert made.returncode == 0, made.output
    # the bug: qemu-img cannot use the image it just made
    refused = run_tool([qemu_img, "check", "-f", "vhdx", str(theirs)])
    assert refused.returncode != 0
    assert "VHDX BAT entry 257 end offset" in refused.stderr
    assert "points after end of file" in refused.stderr

    made = subprocess.run(
        ["blockfmt-img", "create", "-f", "vhdx", "-o", FIXED_OPTIONS, str(ours), FIXED_SIZE],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    check = run_tool([qemu_img, "check", "-f", "vhdx", str(ours)])
    assert check.returncode == 0 and "No errors were found on the image." in check.stdout, check.output
    last = 4097 * MiB - MiB
    wrote = run_tool([qemu_io, "-f", "vhdx", "-c", f"write -P 0x3c {last} {MiB}", str(ours)])
    assert wrote.returncode == 0 and "wrote 1048576/1048576" in wrote.output, wrote.output
    with blockfmt.open(ours) as img:
        assert img.size == 4097 * MiB
        assert img.read_at(last, MiB) == b"\x3c" * MiB
        assert img.check().clean


# -- a log sequence that wraps the end of the circular log ------------------------------------------

GUID = uuid.UUID("19a2b3c4-d5e6-47f8-9a0b-1c2d3e4f5a6b")
#: two unused sectors of the header section (after the region tables), safe to target
TARGET_OLDER, TARGET_NEWER = 512 * 1024, 516 * 1024
OLD = b"\x0a" * LOG_SECTOR_SIZE
FIRST, SECOND = b"\x01" * LOG_SECTOR_SIZE, b"\x02" * LOG_SECTOR_SIZE
ENTRY_LENGTH = 2 * LOG_SECTOR_SIZE  # header and descriptor sector, one data sector


def _wrapped_log(tmp_path: Path) -> Path:
    """Entry 1 in the last 8 KiB of the log, entry 2 at its start with Tail pointing back at entry 1."""
    path = tmp_path / "wrapped.vhdx"
    blockfmt.create(path, "vhdx", 40 * MiB, block_size=MiB)
    with open(path, "r+b") as f:
        for target in (TARGET_OLDER, TARGET_NEWER):
            f.seek(target)
            f.write(OLD)
    set_log_guid(path, GUID)
    header = current_header(path)
    size = path.stat().st_size
    older_at = header.log_length - ENTRY_LENGTH
    older = build_entry(1, older_at, GUID, [(TARGET_OLDER, FIRST)], file_size=size)
    newer = build_entry(2, older_at, GUID, [(TARGET_NEWER, SECOND)], file_size=size)
    put_in_log(path, header.log_offset, header.log_length, older_at, older)
    put_in_log(path, header.log_offset, header.log_length, 0, newer)
    return path


def _sector(path: Path, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(LOG_SECTOR_SIZE)


def test_log_sequence_wrapping_the_end_of_the_log(tmp_path, qemu_img):
    """MS-VHDX §2.3.3: the active sequence runs from the newest entry's Tail to that entry, so both
    entries are replayed. QEMU's ``vhdx_log_search`` ignores Tail: scanning from log offset 0 it
    meets entry 2 alone first, and the full sequence 1-2 it finds later after the wrap has the same
    newest sequence number, so it does not replace the first candidate: only entry 2 is replayed."""
    theirs = _wrapped_log(tmp_path)
    ours = tmp_path / "ours.vhdx"
    shutil.copyfile(theirs, ours)

    replayed = run_tool([qemu_img, "check", "-r", "all", "-f", "vhdx", str(theirs)])
    assert replayed.returncode == 0, replayed.output
    assert _sector(theirs, TARGET_NEWER) == SECOND
    assert _sector(theirs, TARGET_OLDER) == OLD  # the bug: entry 1 of the active sequence is lost

    with blockfmt.open(ours, read_only=False) as img:
        result = img.check("all")
    assert result.corruptions_fixed == 1 and result.clean
    assert _sector(ours, TARGET_NEWER) == SECOND
    assert _sector(ours, TARGET_OLDER) == FIRST
    assert current_header(ours).log_guid.int == 0
    after = run_tool([qemu_img, "check", "-f", "vhdx", str(ours)])
    assert after.returncode == 0, after.output
