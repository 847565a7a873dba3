"""Hook implementations of the ``vhdx`` format: thin delegations to the modules of this package."""

from __future__ import annotations

from typing import Any

from blockfmt.driver import CheckResult, FormatDriver, FormatSpec, RepairMode
from blockfmt.fileio import ImageFile
from blockfmt.markers import hookimpl

from .check import check_image
from .constants import FILE_SIGNATURE
from .create import CREATE_OPTIONS, plan_layout, round_like_qemu_img, write_new_image
from .image import VhdxDriver

FORMAT_NAME = "vhdx"
VHDX_SPEC = FormatSpec(FORMAT_NAME, "Microsoft Hyper-V virtual hard disk v2 (VHDX)", CREATE_OPTIONS)
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
def blockfmt_open(
    format: str, file: ImageFile, read_only: bool, options: dict[str, Any]
) -> VhdxDriver | None:
    if format != FORMAT_NAME:
        return None
    return VhdxDriver(file, read_only=read_only, options=options)


@hookimpl
def blockfmt_create(
    format: str, file: ImageFile, size: int, options: dict[str, Any], exact: bool
) -> bool | None:
    if format != FORMAT_NAME:
        return None
    if not exact:
        size, options = round_like_qemu_img(size, options)
    write_new_image(file, plan_layout(size, options))
    return True


@hookimpl
def blockfmt_check(format: str, driver: FormatDriver, repair: RepairMode) -> CheckResult | None:
    if format != FORMAT_NAME or not isinstance(driver, VhdxDriver):
        return None
    return check_image(driver, repair)
