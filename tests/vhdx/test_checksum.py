"""The CRC-32C function the VHDX plugin loads without the crc32c package's __init__."""

from __future__ import annotations

import subprocess
import sys

import crc32c as crc32c_package

from blockfmt_vhdx.checksum import compute_checksum, crc32c


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
