"""``create``: a new image of a format and size, with qemu-img's ``Formatting ...`` line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import BlockFormatError, InvalidOptionError
from ..options import coerce_create_options, parse_option_list
from . import render
from .img_common import (
    DEFAULT_FORMAT,
    HELP_OPTIONS,
    Reported,
    canonical_names,
    option_help,
    option_list,
    parse_common,
    size_argument,
)
from .report import EXIT_OK, Reporter, UsageError

if TYPE_CHECKING:
    from ..host import Host

__all__ = ["cmd_create"]


def cmd_create(args: list[str], rep: Reporter, host: Host) -> int:
    """``create [--object objectdef] [-q] [-f fmt] [-o options] filename [size]``."""
    parsed = parse_common(args, "f:ho:q", ["help", "object="])
    fmt = parsed.fmt or DEFAULT_FORMAT
    option_texts = [option_list(value) for opt, value in parsed.rest if opt == "-o"]
    pairs = parse_option_list(",".join(option_texts))
    if any(key in HELP_OPTIONS for key, _ in pairs):
        return option_help(rep, host, fmt)
    operands = parsed.operands
    if not operands:
        raise UsageError("Expecting image file name")
    filename = operands[0]
    size = size_argument(operands[1]) if len(operands) > 1 else None
    if len(operands) > 2:
        raise UsageError(f"Unexpected argument: {operands[2]}")
    from ..api import create as create_image

    try:
        spec = host.spec(fmt)
        given = dict(pairs)
        values = coerce_create_options(spec, given)
        if size is None:
            size = values.get("size")
        if size is None:
            raise InvalidOptionError("Image creation needs a size parameter")
        values["size"] = size
        if not parsed.quiet:
            rep.out(
                render.formatting_line(filename, spec, values, canonical_names(spec, list(given)) | {"size"})
            )
        given.pop("size", None)
        create_image(filename, fmt, size, host=host, **given)
    except BlockFormatError as err:
        raise Reported(err, f"{filename}: ") from err
    return EXIT_OK
