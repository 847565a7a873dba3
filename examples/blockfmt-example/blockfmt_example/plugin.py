"""The hooks of the ``example`` format: what blockfmt calls, each a thin delegation.

blockfmt calls open, create and check only for the formats ``blockfmt_formats`` declares, so no
hook needs to ask which format is meant.
"""

from __future__ import annotations

from typing import Any

from blockfmt import (
    CheckResult,
    CreateOption,
    FormatSpec,
    ImageFile,
    InvalidOptionError,
    RepairMode,
    hookimpl,
)

from .driver import ExampleDriver
from .layout import DEFAULT_BLOCK_SIZE, MAGIC, MAX_BLOCK_SIZE, MAX_BLOCKS, Header

FORMAT_NAME = "example"
SPEC = FormatSpec(
    FORMAT_NAME,
    "Example block-table format (blockfmt-example)",
    (
        CreateOption("size", "size", "Virtual disk size"),
        CreateOption(
            "block_size", "size", "Block size (512 B to 64 MiB, a power of two)", DEFAULT_BLOCK_SIZE
        ),
    ),
)


@hookimpl
def blockfmt_formats() -> list[FormatSpec]:
    return [SPEC]


@hookimpl
def blockfmt_probe(head: bytes) -> tuple[str, int] | None:
    return (FORMAT_NAME, 100) if head.startswith(MAGIC) else None


@hookimpl
def blockfmt_open(file: ImageFile, read_only: bool, options: dict[str, Any]) -> ExampleDriver:
    if options:
        raise InvalidOptionError(f"Invalid parameter '{next(iter(options))}'")
    return ExampleDriver(file, read_only=read_only)


@hookimpl
def blockfmt_create(file: ImageFile, size: int, options: dict[str, Any]) -> bool:
    block_size = options["block_size"] or DEFAULT_BLOCK_SIZE
    if not 512 <= block_size <= MAX_BLOCK_SIZE or block_size & (block_size - 1):
        raise InvalidOptionError("Block size must be a power of two from 512 bytes to 64 MiB")
    header = Header(size, block_size)
    if header.blocks > MAX_BLOCKS:
        raise InvalidOptionError(f"Image size must be at most {MAX_BLOCKS * block_size} with this block size")
    file.pwrite(header.pack(), 0)
    file.truncate(header.data_start)
    return True


@hookimpl
def blockfmt_check(driver: ExampleDriver, repair: RepairMode) -> CheckResult:
    return driver.check()
