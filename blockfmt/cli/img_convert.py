"""``convert``: copy an image into a new one of any format."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import BlockFormatError
from ..options import coerce_create_options, parse_option_list
from . import render
from .img_common import (
    DEFAULT_FORMAT,
    HELP_OPTIONS,
    Failure,
    Reported,
    open_image,
    option_help,
    option_list,
    parse_common,
)
from .report import EXIT_OK, Reporter, UsageError

if TYPE_CHECKING:
    from ..host import Host

__all__ = ["cmd_convert"]

#: qemu-img convert draws progress only when it moved by at least this many percent
PROGRESS_MIN_STEP = 1.0
PROGRESS_DONE = 100.0


def cmd_convert(args: list[str], rep: Reporter, host: Host) -> int:
    """``convert [-f fmt] [-O output_fmt] [-o options] [-p] [-q] [-U] filename output_filename``."""
    parsed = parse_common(args, "f:hO:o:pqU", ["help", "force-share", "object="])
    out_fmt, option_texts = DEFAULT_FORMAT, []
    show_progress = False
    for opt, value in parsed.rest:
        if opt == "-O":
            out_fmt = value
        elif opt == "-o":
            option_texts.append(option_list(value))
        elif opt == "-p":
            show_progress = True
    pairs = parse_option_list(",".join(option_texts))
    if any(key in HELP_OPTIONS for key, _ in pairs):
        return option_help(rep, host, out_fmt)
    operands = parsed.operands
    if len(operands) < 2:
        raise Failure("Must specify image file name")
    if len(operands) > 2:
        raise UsageError("Only one source image may be given")  # blockfmt has no multi-source convert
    source_name, target = operands
    options = dict(pairs)
    coerce_create_options(host.spec(out_fmt), options)  # fail before opening anything, as qemu-img does
    from .. import convert as convert_module

    with open_image(
        rep, host, source_name, parsed.fmt, read_only=True, force_share=parsed.force_share
    ) as source:
        progress = ProgressPrinter(rep) if show_progress and not parsed.quiet else None
        try:
            convert_module.convert(source, target, out_fmt, options=options, progress=progress)
        except BlockFormatError as err:
            raise Reported(err, f"{target}: error while converting {out_fmt}: ") from err
        finally:
            if progress is not None:
                progress.end()
    return EXIT_OK


class ProgressPrinter:
    """qemu-img's ``-p`` progress: ``    (NN.NN/100%)\\r`` on every step of at least one percent."""

    def __init__(self, rep: Reporter) -> None:
        self.rep = rep
        self.last = 0.0
        rep.out(render.progress(0.0))

    def __call__(self, percent: float) -> None:
        if percent - self.last >= PROGRESS_MIN_STEP or (percent >= PROGRESS_DONE > self.last):
            self.last = percent
            self.rep.out(render.progress(percent))

    def end(self) -> None:
        self.rep.out(render.progress(self.last) + "\n")
