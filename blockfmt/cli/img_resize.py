"""``resize`` and ``amend``: change the virtual size of an image in place.

qemu-img 7.2 refuses both for vhdx and vdi ("Image format driver does not support resize", "does
not support option amendment"); blockfmt's plugins implement them crash-safe, so these commands
follow qemu-img's command line, checks and messages (as for formats QEMU can resize) and succeed.
``amend`` accepts the one option these formats can change, ``size``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..driver import FormatDriver
from ..errors import BlockFormatError, InvalidOptionError
from ..options import parse_option_list
from .args import NumberError, cvtnum
from .img_common import HELP_OPTIONS, Failure, open_image, open_parsed, option_list, parse_common
from .report import EXIT_OK, Reporter, UsageError

if TYPE_CHECKING:
    from ..host import Host
    from ..image import Image

__all__ = ["cmd_amend", "cmd_resize"]

PREALLOCATION_MODES = ("off", "metadata", "falloc", "full")
#: QEMU's hint after a size it cannot parse (``parse_option_size``)
SIZE_HINT = (
    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively."
)
SHRINK_WARNING = (
    "warning: Shrinking an image will delete all data beyond the shrunken image's end. "
    "Before performing such an operation, make sure there is no important data there."
)
AMENDABLE = (("size", "size", "Virtual disk size"),)


def _size_option(text: str) -> int:
    """A ``size`` value as QEMU's option parser reads it (no sign)."""
    value = cvtnum(text, (1 << 64) - 1)
    if isinstance(value, NumberError) or text[:1] in "+-":
        raise InvalidOptionError("Parameter 'size' expects a non-negative number below 2^64", hint=SIZE_HINT)
    return value


def _resizable(image: Image) -> bool:
    return type(image.driver).truncate is not FormatDriver.truncate


def cmd_resize(args: list[str], rep: Reporter, host: Host) -> int:
    """``resize [--object] [--image-opts] [-f fmt] [--preallocation=p] [-q] [--shrink] filename [+|-]size``.

    Like qemu-img, the last argument is taken as the size before options are parsed, so that
    ``-1G`` is not read as an option.
    """
    if len(args) < 2:
        raise UsageError("Not enough arguments")
    size_text = args[-1]
    parsed = parse_common(args[:-1], "f:hq", ["help", "object=", "image-opts", "preallocation=", "shrink"])
    shrink = False
    preallocation = "off"
    for opt, value in parsed.rest:
        if opt == "--shrink":
            shrink = True
        elif opt == "--preallocation":
            if value not in PREALLOCATION_MODES:
                raise Failure(f"Invalid preallocation mode '{value}'")
            preallocation = value
    if len(parsed.operands) != 1:
        raise UsageError("Expecting image file name and size")
    sign = size_text[:1] if size_text[:1] in "+-" else ""
    amount = _size_option(size_text[len(sign) :])
    with open_image(
        rep, host, parsed.operands[0], parsed.fmt, read_only=False, image_opts=parsed.image_opts
    ) as image:
        current = image.size
        total = current + amount if sign == "+" else current - amount if sign == "-" else amount
        if total <= 0:
            raise Failure("New image size must be positive")
        if total <= current and preallocation != "off":
            raise Failure("Preallocation can only be used for growing images")
        if total < current and not shrink:
            rep.error("Use the --shrink option to perform a shrink operation.")
            raise Failure(SHRINK_WARNING)
        if preallocation in ("falloc", "full") and not host.spec(image.format).data_only:
            raise Failure(f"Unsupported preallocation mode '{preallocation}'")
        image.resize(total, shrink=True)
    if not parsed.quiet:
        rep.out("Image resized.\n")
    return EXIT_OK


def cmd_amend(args: list[str], rep: Reporter, host: Host) -> int:
    """``amend [--object] [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename``."""
    parsed = parse_common(args, "ho:f:t:pq", ["help", "object=", "image-opts", "force"])
    texts = [option_list(value) for opt, value in parsed.rest if opt == "-o"]
    show_progress = any(opt == "-p" for opt, _ in parsed.rest) and not parsed.quiet
    if not texts:
        raise UsageError("Must specify options (-o)")
    pairs = parse_option_list(",".join(texts))
    asks_help = any(key in HELP_OPTIONS for key, _ in pairs)
    if len(parsed.operands) != 1 and not (asks_help and parsed.fmt and not parsed.operands):
        raise Failure("Expecting one image file name")
    if not parsed.operands:
        return _amend_help(rep, host, parsed.fmt or "")
    with open_parsed(rep, host, parsed, parsed.operands[0], read_only=asks_help) as image:
        if not _resizable(image) or host.spec(image.format).data_only:
            raise Failure(f"Format driver '{image.format}' does not support option amendment")
        if asks_help:
            return _amend_help(rep, host, image.format)
        size = None
        for key, value in pairs:
            if key != "size":
                raise Failure(f"Invalid parameter '{key}'")
            size = _size_option(value)
        from .img_convert import ProgressPrinter

        progress = ProgressPrinter(rep) if show_progress else None
        try:
            if size is not None:
                image.resize(size, shrink=True)
        except BlockFormatError as err:
            raise Failure(f"Error while amending options: {err.message}") from err
        finally:
            if progress is not None:
                progress(100.0)
                progress.end()
    return EXIT_OK


def _amend_help(rep: Reporter, host: Host, fmt: str) -> int:
    """``amend -o help``: the options this format can change, in ``-o help``'s layout."""
    spec = host.spec(fmt)
    if spec.data_only:
        raise Failure(f"Format driver '{fmt}' does not support option amendment")
    from .render import OPTION_HELP_COLUMN

    lines = "".join(
        f"{f'  {name}=<{kind}>':<{OPTION_HELP_COLUMN}} - {text}\n" for name, kind, text in AMENDABLE
    )
    rep.out(f"Amend options for '{fmt}':\n{lines}")
    return EXIT_OK
