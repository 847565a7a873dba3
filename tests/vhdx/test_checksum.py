"""The CRC-32C function the VHDX plugin loads without the crc32c package's __init__, and the
checksum rule the plugin offers tools (the fuzzer) through its hook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import crc32c as crc32c_package
import pytest

import blockfmt
from blockfmt.errors import CorruptImageError, UnsupportedOperationError
from blockfmt.host import default_host
from blockfmt_vhdx.checksum import compute_checksum, crc32c, verify_checksum
from blockfmt_vhdx.constants import CHECKSUM_OFFSET, HEADER1_OFFSET, HEADER_SIZE, REGION_TABLE1_OFFSET
from blockfmt_vhdx.structs import Header, RegionTable

MiB = 1 << 20


def test_it_is_the_packages_function() -> None:
    """Same results as the package's public function, including the standard check value."""
    assert crc32c(b"123456789") == 0xE3069283
    data = bytes(range(256)) * 17
    assert crc32c(data) == crc32c_package.crc32c(data)
    assert crc32c(data[100:], crc32c(data[:100])) == crc32c(data)
    assert compute_checksum(bytearray(8), 4) == crc32c(bytes(8))


def test_loading_it_imports_no_metadata_machinery() -> None:
    """Opening a VHDX must not pay for importlib.metadata or argparse (start-up time)."""
    code = (
        "import sys, blockfmt_vhdx.checksum\n"
        "print(sorted({'importlib.metadata', 'argparse'} & sys.modules.keys()))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout == "[]\n"


def test_the_stamp_hook_is_the_rule_headers_and_log_entries_are_checked_by(tmp_path: Path) -> None:
    """What the fuzzer calls (``blockfmt_stamp_checksum``) makes a damaged header and region table
    valid again, by the same rule the plugin checks them with; raw keeps no checksums."""
    path = tmp_path / "c.vhdx"
    blockfmt.create(path, "vhdx", 64 * MiB)
    hooks = default_host().hooks("vhdx")
    raw = bytearray(path.read_bytes())
    for offset, size, parse in (
        (HEADER1_OFFSET, HEADER_SIZE, Header.parse),
        (REGION_TABLE1_OFFSET, RegionTable.SIZE, RegionTable.parse),
    ):
        structure = raw[offset : offset + size]
        structure[100] ^= 0xFF
        with pytest.raises(CorruptImageError, match="checksum"):
            parse(structure)
        hooks.stamp_checksum(structure, CHECKSUM_OFFSET)
        parse(structure)
        assert verify_checksum(structure, CHECKSUM_OFFSET)
    with pytest.raises(UnsupportedOperationError):
        default_host().hooks("raw").stamp_checksum(bytearray(8), 4)
