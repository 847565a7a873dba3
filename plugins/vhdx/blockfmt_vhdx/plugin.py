"""Hook implementations of the ``vhdx`` format: thin delegations to the modules of this package.

The host calls these hooks for ``vhdx`` only, so they take no format guard. The modules that
open, create and check images are imported on first use: a process that merely lists formats or
probes a file does not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from blockfmt.driver import CheckResult, FormatSpec, OpenOption, RepairMode
from blockfmt.fileio import ImageFile
from blockfmt.markers import hookimpl

from .constants import FILE_SIGNATURE
from .options import CREATE_OPTIONS

if TYPE_CHECKING:
    from .image import VhdxDriver

FORMAT_NAME = "vhdx"
#: a read-only open of an image whose log needs replaying: serve the replayed state from memory
#: instead of refusing, leaving the file as it is (NOTES.md #1)
LOG_REPLAY_MEMORY = OpenOption(
    "log_replay", "read-only open with a dirty log: replay it in memory, not in the file", ("memory",)
)
VHDX_SPEC = FormatSpec(
    FORMAT_NAME,
    "Microsoft Hyper-V virtual hard disk v2 (VHDX)",
    CREATE_OPTIONS,
    open_options=(LOG_REPLAY_MEMORY,),
)
#: QEMU's vhdx_probe score for a file starting with the signature
_PROBE_SCORE = 100


@hookimpl
def blockfmt_formats() -> list[FormatSpec]:
    return [VHDX_SPEC]


@hookimpl
def blockfmt_probe(head: bytes) -> tuple[str, int] | None:
    """Claim files that start with ``vhdxfile`` (MS-VHDX §2.2.1), as QEMU's probe does."""
    return (FORMAT_NAME, _PROBE_SCORE) if head.startswith(FILE_SIGNATURE) else None


@hookimpl
def blockfmt_open(file: ImageFile, read_only: bool, options: dict[str, Any]) -> VhdxDriver:
    from .image import VhdxDriver

    return VhdxDriver(file, read_only=read_only, options=options)


@hookimpl
def blockfmt_create(file: ImageFile, size: int, options: dict[str, Any], exact: bool) -> bool:
    from .create import plan_layout, round_like_qemu_img, write_new_image

    if not exact:
        size, options = round_like_qemu_img(size, options)
    write_new_image(file, plan_layout(size, options))
    return True


@hookimpl
def blockfmt_check(driver: VhdxDriver, repair: RepairMode) -> CheckResult:
    from .check import check_image

    return check_image(driver, repair)


@hookimpl
def blockfmt_stamp_checksum(structure: bytearray, field: int) -> bool:
    """CRC-32C of the structure with the field counted as zeros, little-endian (MS-VHDX §2.2.2)."""
    from .checksum import stamp_checksum

    stamp_checksum(structure, field)
    return True
