"""Hook implementations of the vdi format: thin delegations to the modules that do the work.

The host calls these hooks for ``vdi`` only, so they take no format guard. The modules that
open, create and check images are imported on first use: a process that merely lists formats or
probes a file does not pay for them.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from blockfmt.driver import CheckResult, CreateOption, FormatSpec, RepairMode
from blockfmt.fileio import ImageFile
from blockfmt.markers import hookimpl

from .constants import FORMAT_NAME, HEADER_STRUCT_SIZE, SECTOR_SIZE, VDI_SIGNATURE

if TYPE_CHECKING:
    from .image import VdiDriver

VDI_SPEC = FormatSpec(
    FORMAT_NAME,
    "VirtualBox Disk Image (dynamic and static, header v1.1)",
    (
        CreateOption("size", "size", "Virtual disk size"),
        CreateOption(
            "static", "bool", "VDI static (pre-allocated) image", default=False, blockdev_name="preallocation"
        ),
    ),
)
_SIGNATURE = struct.Struct("<I")
#: ``VDIPREHEADER``: a 64-byte banner, then the signature (a constant here, so that probing, which
#: every open of every format runs, does not import the header structures)
_SIGNATURE_OFFSET = 64
_PROBE_SCORE = 100


@hookimpl
def blockfmt_formats() -> list[FormatSpec]:
    return [VDI_SPEC]


@hookimpl
def blockfmt_probe(head: bytes) -> tuple[str, int] | None:
    """QEMU's ``vdi_probe``: a whole header sector whose signature matches scores 100."""
    if len(head) < HEADER_STRUCT_SIZE:
        return None
    (signature,) = _SIGNATURE.unpack_from(head, _SIGNATURE_OFFSET)
    return (FORMAT_NAME, _PROBE_SCORE) if signature == VDI_SIGNATURE else None


@hookimpl
def blockfmt_open(file: ImageFile, read_only: bool, options: dict[str, Any]) -> VdiDriver:
    from .image import VdiDriver

    return VdiDriver(file, read_only=read_only)


@hookimpl
def blockfmt_create(file: ImageFile, size: int, options: dict[str, Any], exact: bool) -> bool:
    from .create import write_new_image
    from .structs import round_up

    if not exact:  # qemu-img rounds the size up to whole sectors (vdi_co_create_opts); QMP does not
        size = round_up(size, SECTOR_SIZE)
    write_new_image(file, size, static=bool(options.get("static")))
    return True


@hookimpl
def blockfmt_check(driver: VdiDriver, repair: RepairMode) -> CheckResult:
    from .check import check_image

    return check_image(driver, repair)
