"""The fuzz harness itself: each invariant catches a plugin built to break it.

A fuzzer that cannot fail is a defect, so a deliberately broken format ("buggy") exercises every
rule: a foreign exception, a hang, a hostile allocation, a negative offset, a write by a read-only
open, a repair that destroys data, and a worker that dies.
"""

from __future__ import annotations

import os
import random
import struct
import time
from typing import Any

import pytest

from blockfmt.driver import CheckResult, FormatDriver, FormatSpec, RepairMode
from blockfmt.errors import BlockFormatError, CorruptImageError
from blockfmt.fileio import ImageFile
from blockfmt.host import Host, get_plugin_manager
from blockfmt.markers import hookimpl
from blockfmt.testing.fuzz import (
    UNMUTATED,
    ChecksumSpan,
    HotRegion,
    Layout,
    Limits,
    RecordingFile,
    Seed,
    SparseBytes,
    make_case,
    mutate,
    run_campaign,
)

FORMAT = "buggy"
MAGIC = b"BUGGYFMT"
HEADER = struct.Struct("<8sIQ")  # magic, behaviour, disk size
DATA_OFFSET = 4096
DISK_SIZE = 64 * 1024
LIMITS = Limits(seconds_per_case=1.0, memory=256 << 20)


class BuggyDriver(FormatDriver):
    """Its header picks one way to misbehave."""

    def __init__(self, file: ImageFile, *, read_only: bool) -> None:
        super().__init__(file, read_only=read_only)
        magic, self.behaviour, self.size = HEADER.unpack(file.pread(HEADER.size, 0))
        if magic != MAGIC:
            raise CorruptImageError("not a buggy image")
        if self.behaviour == 1:
            struct.unpack("<Q", b"short")
        if self.behaviour == 2:
            while True:
                time.sleep(0.01)
        if self.behaviour == 3:
            bytearray(1 << 31)  # 2 GiB: fine without a bound, refused under RLIMIT_AS
        if self.behaviour == 4:
            file.pread(16, -4096)
        if self.behaviour == 5 and read_only:
            file.pwrite(b"x", 0)
        if self.behaviour == 7:
            os._exit(3)

    def readinto(self, offset: int, buf: memoryview) -> None:
        got = self.file.preadinto(buf, DATA_OFFSET + offset)
        buf[got:] = bytes(len(buf) - got)

    def write(self, offset: int, data: memoryview) -> None:
        self.file.pwrite(data, DATA_OFFSET + offset)


class BuggyFormat:
    @hookimpl
    def blockfmt_formats(self) -> list[FormatSpec]:
        return [FormatSpec(FORMAT, "a format that breaks the rules on request", ())]

    @hookimpl
    def blockfmt_probe(self, head: bytes) -> tuple[str, int] | None:
        return (FORMAT, 100) if head.startswith(MAGIC) else None

    @hookimpl
    def blockfmt_open(self, format: str, file: ImageFile, read_only: bool, options: dict[str, Any]):
        return BuggyDriver(file, read_only=read_only) if format == FORMAT else None

    @hookimpl
    def blockfmt_check(self, format: str, driver: FormatDriver, repair: RepairMode) -> CheckResult | None:
        if format != FORMAT:
            return None
        assert isinstance(driver, BuggyDriver)
        if driver.behaviour == 6 and repair is not RepairMode.NONE:
            driver.file.pwrite(b"\xff" * 16, DATA_OFFSET)  # "repairs" by scribbling over guest data
        return CheckResult()

    @hookimpl
    def blockfmt_stamp_checksum(self, structure: bytearray, field: int) -> bool:
        """The format's own rule: CRC-32C of the structure with the field zeroed, little-endian."""
        import crc32c

        structure[field : field + 4] = bytes(4)
        structure[field : field + 4] = crc32c.crc32c(structure).to_bytes(4, "little")
        return True


def buggy_host() -> Host:
    return Host(get_plugin_manager([BuggyFormat()], autoload=False))


def buggy_seed(behaviour: int) -> Seed:
    image = bytearray(DATA_OFFSET + DISK_SIZE)
    HEADER.pack_into(image, 0, MAGIC, behaviour, DISK_SIZE)
    image[DATA_OFFSET : DATA_OFFSET + 5] = b"hello"
    store = SparseBytes.from_bytes(image)
    return Seed(
        f"buggy-{behaviour}", FORMAT, store, Layout((HotRegion("header", 0, HEADER.size, ((8, 4),)),))
    )


def run_one(behaviour: int):
    summary = run_campaign(
        [buggy_seed(behaviour)], iter([(0, UNMUTATED)]), limits=LIMITS, make_host=buggy_host
    )
    assert summary.cases == 1
    return summary


def test_a_well_behaved_image_passes() -> None:
    summary = run_one(0)
    assert (summary.ok, summary.failures) == (1, [])


@pytest.mark.parametrize(
    ("behaviour", "stage", "detail"),
    [
        (1, "open read-only", "struct.error"),
        (2, "open read-only", "hang: per-case time bound expired"),
        (3, "open read-only", "MemoryError"),
        (4, "open read-only", "illegitimate file I/O: read at negative offset -4096"),
        (5, "open read-only", "illegitimate file I/O: write of 1 bytes at 0 by a read-only open"),
        (6, "reopen after repair", "repair changed guest data without reporting a fixed corruption"),
        (7, "worker", "worker died (exit 3)"),
    ],
)
def test_each_broken_rule_is_a_failure(behaviour: int, stage: str, detail: str) -> None:
    summary = run_one(behaviour)
    assert len(summary.failures) == 1
    outcome = summary.failures[0].outcome
    assert outcome.stage == stage
    assert detail in outcome.detail
    assert summary.crash_free_rate == 0.0


def test_campaign_survives_a_dead_worker_and_goes_on() -> None:
    seeds = [buggy_seed(7), buggy_seed(0)]
    jobs = iter([(0, UNMUTATED), (1, UNMUTATED), (1, UNMUTATED)])
    summary = run_campaign(seeds, jobs, limits=LIMITS, make_host=buggy_host)
    assert (summary.cases, summary.ok, len(summary.failures)) == (3, 2, 1)


def test_cases_rebuild_deterministically() -> None:
    seeds = [buggy_seed(0)]
    first = make_case(seeds, 0, 1234)
    again = make_case(seeds, 0, 1234)
    assert first.mutations == again.mutations
    assert first.store.to_bytes() == again.store.to_bytes()
    assert seeds[0].store.to_bytes()[:8] == MAGIC  # the seed itself is never modified


def test_mutation_fixes_checksums_by_the_plugins_rule() -> None:
    import crc32c

    data = bytearray(8192)
    seed = Seed(
        "crc",
        FORMAT,
        SparseBytes.from_bytes(data),
        Layout((HotRegion("h", 0, 64),), (ChecksumSpan(0, 4096, 4),)),
    )
    for n in range(50):
        store, mutations = mutate(seed, random.Random(n), fix_checksums=1.0, host=buggy_host())
        block = bytearray(store.read(0, 4096))
        if len(block) == 4096 and store.size >= 4096:
            stored = int.from_bytes(block[4:8], "little")
            block[4:8] = bytes(4)
            assert stored == crc32c.crc32c(block), mutations


def test_sparse_bytes_copy_on_write() -> None:
    base = SparseBytes.from_bytes(b"\x01" * 70000 + bytes(200000) + b"\x02")
    copy = base.copy()
    copy.write(b"zz", 65535)
    copy.truncate(100)
    assert base.read(65534, 3) == b"\x01\x01\x01"
    assert base.size == 270001 and base.read(270000, 1) == b"\x02"
    assert copy.to_bytes() == b"\x01" * 100
    copy.truncate(70000)
    assert copy.read(99, 2) == b"\x01\x00"


def test_recording_file_bounds() -> None:
    file = RecordingFile(SparseBytes.from_bytes(b"abc"), "f", read_only=False, growth=10, max_io=8)
    assert file.pread(5, 1) == b"bc\0\0\0"
    file.pwrite(b"x" * 8, 5)
    with pytest.raises(BlockFormatError):  # the plugin sees an I/O error
        file.pwrite(b"y", 13)
    with pytest.raises(BlockFormatError):
        file.pread(9, 0)
    assert file.violations == [
        "write at 13 length 1 beyond the file bound 13",
        "read of 9 bytes at 0 exceeds the 8-byte bound",
    ]
