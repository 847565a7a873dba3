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
    """``create [--object objectdef] [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options]
    filename [size]``."""
    parsed = parse_common(args, "f:ho:qb:F:u", ["help", "object="])
    fmt = parsed.fmt or DEFAULT_FORMAT
    option_texts = [option_list(value) for opt, value in parsed.rest if opt == "-o"]
    backing = next((value for opt, value in reversed(parsed.rest) if opt == "-b"), None)
    backing_fmt = next((value for opt, value in reversed(parsed.rest) if opt == "-F"), None)
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
        backing = backing or given.pop("backing_file", None)
        backing_fmt = backing_fmt or given.pop("backing_fmt", None)
        typed = coerce_create_options(spec, given)
        if size is None:
            size = typed.values.get("size")
        linked: dict[str, str] = {}
        if backing:
            from .chain_commands import backing_facts

            parent_fmt, parent_size = backing_facts(filename, backing, backing_fmt, host)
            linked = {"backing_file": backing, "backing_fmt": parent_fmt}
            size = parent_size if size is None else size
        if size is None:
            raise InvalidOptionError("Image creation needs a size parameter")
        if not parsed.quiet:
            shown = canonical_names(spec, list(given)) | {"size"}
            line = render.formatting_line(filename, spec, {**typed.values, "size": size}, shown)
            extra = "".join(f" {key}={value}" for key, value in linked.items())
            rep.out(line.replace(f" size={size}", f" size={size}{extra}", 1))
        create_image(filename, fmt, size, typed, host=host, **linked)
    except BlockFormatError as err:
        raise Reported(err, f"{filename}: ") from err
    return EXIT_OK
