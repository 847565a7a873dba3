"""``compare``: whether two images read the same, and where they first differ."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import BlockFormatError
from .img_common import Reported, open_image, parse_common, quiet_printer
from .report import EXIT_FAILURE, EXIT_OK, Reporter, UsageError

if TYPE_CHECKING:
    from ..host import Host
    from ..image import Image

__all__ = ["cmd_compare"]

#: qemu-img compare reports mismatches at the start of the 512-byte sector holding them
SECTOR_SIZE = 512
#: ``qemu-img compare`` exit codes beyond 0/1
EXIT_COMPARE_OPEN_FAILED = 2
EXIT_COMPARE_READ_FAILED = 4


def cmd_compare(args: list[str], rep: Reporter, host: Host) -> int:
    """``compare [--object] [--image-opts] [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] a b``.

    Exit codes as qemu-img's: 0 identical, 1 different, 2 an image cannot be opened, 4 read error.
    """
    parsed = parse_common(args, "f:F:hpqsT:U", ["help", "force-share", "object=", "image-opts"])
    second_fmt = None
    strict = False
    for opt, value in parsed.rest:
        if opt == "-F":
            second_fmt = value
        elif opt == "-s":
            strict = True
    if len(parsed.operands) != 2:
        raise UsageError("Expecting two image file names")
    first_name, second_name = parsed.operands
    say = quiet_printer(rep, parsed.quiet)
    share = parsed.force_share
    try:
        with (
            open_image(
                rep,
                host,
                first_name,
                parsed.fmt,
                read_only=True,
                force_share=share,
                image_opts=parsed.image_opts,
            ) as first,
            open_image(
                rep,
                host,
                second_name,
                second_fmt,
                read_only=True,
                force_share=share,
                image_opts=parsed.image_opts,
            ) as second,
        ):
            return _compare_images(say, first, second, strict)
    except Reported as err:
        err.code = EXIT_COMPARE_OPEN_FAILED
        raise
    except BlockFormatError as err:
        raise Reported(err, "", EXIT_COMPARE_READ_FAILED) from err


def _compare_images(say: Callable[[str], None], first: Image, second: Image, strict: bool) -> int:
    from ..compare import compare, first_status_mismatch

    if strict and first.size != second.size:
        say("Strict mode: Image size mismatch!\n")
        return EXIT_FAILURE
    diff = compare(first, second)
    sector = None if diff is None else diff - diff % SECTOR_SIZE
    if strict:
        status = first_status_mismatch(first, second)
        if status is not None and (sector is None or status <= sector):
            say(f"Strict mode: Offset {status} block status mismatch!\n")
            return EXIT_FAILURE
    common = min(first.size, second.size)
    if sector is not None and sector < common:
        say(f"Content mismatch at offset {sector}!\n")
        return EXIT_FAILURE
    if first.size != second.size:
        say("Warning: Image size mismatch!\n")
    if sector is not None:
        say(f"Content mismatch at offset {sector}!\n")
        return EXIT_FAILURE
    say("Images are identical.\n")
    return EXIT_OK
