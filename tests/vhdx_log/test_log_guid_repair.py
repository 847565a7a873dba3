"""A LogGuid over a log with no valid active sequence: ``check -r all`` clears it (issue 19).

MS-VHDX §2.3.1.1 makes Tail "the byte offset in the log" of the first entry of the sequence, so a
Tail equal to (or past) the log length names no entry: the entry is invalid and, with nothing else
in the log, there is nothing to replay (§2.3.3: invalid entries are ignored). QEMU 7.2 never reads
Tail (``vhdx_log_search`` walks entries from every sector on its own), so it takes the entry as an
active sequence of one and refuses a read-only open until it is replayed. blockfmt replays nothing
and, on repair, clears the LogGuid: after that both tools open the image and read the same bytes.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

import blockfmt
from blockfmt.testing.qemu import run_tool
from blockfmt_vhdx.constants import LOG_SECTOR_SIZE

from .entries import build_entry, put_in_log
from .headers import current_header, set_log_guid

MiB = 1 << 20
GUID = uuid.UUID("5d1c2b3a-4f5e-4a6b-9c8d-7e6f5a4b3c2d")
#: an unused 4 KiB of the header section (after the region tables), safe to target
TARGET = 512 * 1024
OLD, NEW = b"\x0a" * LOG_SECTOR_SIZE, b"\x0b" * LOG_SECTOR_SIZE


@pytest.fixture
def image(tmp_path) -> Path:
    """An image whose LogGuid is set and whose only entry has Tail == log length."""
    path = tmp_path / "tail.vhdx"
    blockfmt.create(path, "vhdx", 40 * MiB, block_size=MiB)
    with blockfmt.open(path, read_only=False) as img:
        img.write_at(0, b"\x5a" * MiB)
    with open(path, "r+b") as f:
        f.seek(TARGET)
        f.write(OLD)
    set_log_guid(path, GUID)
    header = current_header(path)
    entry = build_entry(1, header.log_length, GUID, [(TARGET, NEW)], file_size=path.stat().st_size)
    put_in_log(path, header.log_offset, header.log_length, 0, entry)
    return path


def _sector(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(TARGET)
        return f.read(LOG_SECTOR_SIZE)


def test_read_only_check_leaves_the_stale_log_guid(image):
    with blockfmt.open(image) as img:
        assert img.read_at(0, MiB) == b"\x5a" * MiB
        result = img.check()
    assert result.clean and result.messages == []  # a crash before the first entry leaves this too
    assert current_header(image).log_guid == GUID


def test_repair_clears_the_log_guid_and_replays_nothing(image):
    with blockfmt.open(image, read_only=False) as img:
        result = img.check("all")
        assert (result.corruptions, result.corruptions_fixed) == (0, 1)
        assert img.check().clean
        assert img.read_at(0, MiB) == b"\x5a" * MiB
    assert current_header(image).log_guid.int == 0
    assert _sector(image) == OLD
    with blockfmt.open(image, read_only=False) as img:
        again = img.check("all")
    assert (again.corruptions, again.corruptions_fixed, again.messages) == (0, 0, [])


@pytest.mark.qemu
def test_after_cli_repair_qemu_opens_read_only_and_reads_the_same(image, qemu_img, qemu_io):
    refused = run_tool([qemu_io, "-r", "-f", "vhdx", "-c", "read 0 4k", str(image)])
    # QEMU's bug-compatible reading of the log: it ignores Tail and wants to replay the entry
    assert refused.returncode != 0 and "contains a log that needs to be replayed" in refused.output
    repaired = subprocess.run(
        ["blockfmt-img", "check", "-r", "all", "-f", "vhdx", str(image)], capture_output=True, text=True
    )
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "1 corruptions" in repaired.stdout
    read = run_tool([qemu_io, "-r", "-f", "vhdx", "-c", f"read -P 0x5a 0 {MiB}", str(image)])
    assert read.returncode == 0 and "Pattern verification failed" not in read.output, read.output
    assert "read 1048576/1048576 bytes" in read.output
    check = run_tool([qemu_img, "check", "-f", "vhdx", str(image)])
    assert check.returncode == 0 and "No errors were found on the image." in check.stdout, check.output
    assert _sector(image) == OLD  # QEMU replayed nothing either: the GUID is gone
