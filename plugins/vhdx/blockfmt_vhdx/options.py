"""The ``-o`` options of ``vhdx``, as ``qemu-img create -o help`` lists them.

Kept apart from :mod:`.create` so that registering the format costs no more than this table.
"""

from __future__ import annotations

from blockfmt.driver import CreateOption

from .constants import DEFAULT_LOG_SIZE

__all__ = ["CREATE_OPTIONS"]

CREATE_OPTIONS = (
    CreateOption("size", "size", "Virtual disk size; max of 64TB."),
    CreateOption("log_size", "size", "Log size; min 1MB.", DEFAULT_LOG_SIZE, "log-size"),
    CreateOption(
        "block_size",
        "size",
        "Block Size; min 1MB, max 256MB. 0 means auto-calculate based on image size.",
        0,
        "block-size",
    ),
    CreateOption(
        "subformat",
        "string",
        "VHDX format type, can be either 'dynamic' or 'fixed'. Default is 'dynamic'.",
        None,
        "subformat",
    ),
    CreateOption(
        "block_state_zero",
        "bool",
        "Force use of payload blocks of type 'ZERO'. Non-standard, but default.  Do not set to 'off' when "
        "using 'qemu-img convert' with subformat=dynamic.",
        None,
        "block-state-zero",
    ),
    CreateOption(
        "logical_sector_size",
        "number",
        "Logical sector size in bytes, 512 or 4096 (blockfmt extension; QEMU opens only 512).",
        None,
        "logical-sector-size",
    ),
    CreateOption(
        "physical_sector_size",
        "number",
        "Physical sector size in bytes, 512 or 4096 (blockfmt extension).",
        None,
        "physical-sector-size",
    ),
)
