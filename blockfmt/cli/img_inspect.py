"""``info``, ``check`` and ``map``: the subcommands that open one image and report on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..driver import CheckResult, RepairMode
from ..errors import BlockFormatError, UnsupportedOperationError
from . import render
from .args import INT64_MAX
from .img_common import Failure, Reported, one_filename, open_parsed, parse_common, size_option
from .report import (
    EXIT_CHECK_CORRUPTIONS,
    EXIT_CHECK_LEAKS,
    EXIT_CHECK_UNSUPPORTED,
    EXIT_FAILURE,
    EXIT_OK,
    Reporter,
    UsageError,
)

if TYPE_CHECKING:
    from ..host import Host
    from ..image import Image

__all__ = ["cmd_check", "cmd_info", "cmd_map"]

_OPENING_LONG = ("help", "output=", "force-share", "format=", "object=", "image-opts")


def cmd_info(args: list[str], rep: Reporter, host: Host) -> int:
    """``info [--object objectdef] [--image-opts] [-f fmt] [--output=ofmt] [--backing-chain] [-U] file``."""
    parsed = parse_common(args, "f:hU", (*_OPENING_LONG, "backing-chain"))
    backing_chain = any(opt == "--backing-chain" for opt, _ in parsed.rest)
    from .chain_commands import info_text

    filename = one_filename(parsed)
    with open_parsed(rep, host, parsed, filename, read_only=True) as image:
        text = info_text(image, parsed.output, backing_chain)
    rep.out(text)
    return EXIT_OK


def cmd_check(args: list[str], rep: Reporter, host: Host) -> int:
    """``check [--object] [--image-opts] [-q] [-f fmt] [--output=ofmt] [-r leaks|all] [-T cache] [-U] file``.

    Exit codes as qemu-img's: 0 clean, 1 check failed, 2 corruptions, 3 leaks only, 63 no check.
    """
    parsed = parse_common(args, "f:hqr:T:U", (*_OPENING_LONG, "repair="))
    repair = RepairMode.NONE
    for opt, value in parsed.rest:
        if opt in ("-r", "--repair"):
            if value not in (RepairMode.LEAKS.value, RepairMode.ALL.value):
                raise UsageError(f"Unknown option value for -r (expecting 'leaks' or 'all'): {value}")
            repair = RepairMode(value)
    filename = one_filename(parsed)
    output, quiet = parsed.output, parsed.quiet
    writable = repair is not RepairMode.NONE
    with open_parsed(rep, host, parsed, filename, read_only=not writable, cache=parsed.source_cache) as image:
        result = _run_check(rep, image, repair)
        if result is None:
            return EXIT_CHECK_UNSUPPORTED
        if result.corruptions_fixed or result.leaks_fixed:
            if output == "human" and not quiet:
                rep.out(render.check_repaired(result))
            fixed = (result.corruptions_fixed, result.leaks_fixed)
            result = _run_check(rep, image, RepairMode.NONE)
            if result is None:
                return EXIT_CHECK_UNSUPPORTED
            result.corruptions_fixed, result.leaks_fixed = fixed
        if not quiet:
            rep.out(
                render.check_json(result, image.filename, image.format)
                if output == "json"
                else render.check_human(result)
            )
    if result.check_errors:
        rep.error("Check failed")
        return EXIT_FAILURE
    if result.corruptions:
        return EXIT_CHECK_CORRUPTIONS
    if result.leaks:
        return EXIT_CHECK_LEAKS
    return EXIT_OK


def _run_check(rep: Reporter, image: Image, repair: RepairMode) -> CheckResult | None:
    """One check pass; the plugin's per-problem lines go to stderr as QEMU's drivers print them."""
    try:
        result = image.check(repair)
    except UnsupportedOperationError as err:
        rep.error(err.message)
        return None
    except BlockFormatError as err:
        raise Reported(err, "Check failed: ") from err
    if result.messages:
        rep.err("".join(f"{line}\n" for line in result.messages))
    return result


def cmd_map(args: list[str], rep: Reporter, host: Host) -> int:
    """``map [-f fmt] [--start-offset=offset] [--max-length=len] [--output=ofmt] [-U] filename``."""
    parsed = parse_common(args, "f:hU", (*_OPENING_LONG, "start-offset=", "max-length="))
    from .chain_commands import layer_names

    start, max_length = 0, INT64_MAX
    for opt, value in parsed.rest:
        if opt == "--start-offset":
            start = size_option(value, "start offset")
        elif opt == "--max-length":
            max_length = size_option(value, "max length")
    filename = one_filename(parsed)
    with open_parsed(rep, host, parsed, filename, read_only=True) as image:
        end = min(image.size, start + max_length)
        extents = image.map(start, end - start) if start < end else []
        filename = image.filename
        names = layer_names(image)
    if parsed.output == "json":
        rep.out(render.map_json(extents, empty_at=start))
        return EXIT_OK
    rep.out(render.MAP_HUMAN_HEADER)
    rows, complete = render.map_human(extents, filename, names)
    rep.out(rows)
    if not complete:
        raise Failure("File contains external, encrypted or compressed clusters.")
    return EXIT_OK
