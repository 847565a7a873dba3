"""``convert``: copy images into a new one of any format, or into an existing one (``-n``)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..cache import CacheMode
from ..errors import BlockFormatError
from ..options import CreateOptions, coerce_create_options, parse_option_list
from . import render
from .img_common import (
    DEFAULT_FORMAT,
    HELP_OPTIONS,
    CommonOptions,
    Failure,
    Reported,
    open_image,
    open_parsed,
    option_help,
    option_list,
    parse_common,
    size_option,
    snapshot_refusal,
)
from .report import EXIT_OK, Reporter

if TYPE_CHECKING:
    from ..host import Host
    from ..image import Image

__all__ = ["cmd_convert"]

#: qemu-img convert draws progress only when it moved by at least this many percent
PROGRESS_MIN_STEP = 1.0
PROGRESS_DONE = 100.0
#: qemu-img convert writes its target with ``-t unsafe`` unless told otherwise: no flush at all
DEFAULT_TARGET_CACHE = CacheMode.UNSAFE


#: ``-S`` must be a multiple of this, at most :data:`SPARSE_MAX` (0 turns sparse detection off)
SPARSE_UNIT = 512
SPARSE_MAX = 16 << 20
MAX_COROUTINES = 16
#: ``-S`` default: zero runs of this many bytes are not written as data
DEFAULT_SPARSE = 4096
COPY_CHUNK = 4 << 20
_ZEROS = bytes(COPY_CHUNK)


@dataclass
class _ConvertOptions:
    """What ``convert`` was asked to do beyond the shared options."""

    out_fmt: str = DEFAULT_FORMAT
    out_fmt_given: bool = False
    option_texts: list[str] = field(default_factory=list)
    show_progress: bool = False
    skip_create: bool = False
    target_is_zero: bool = False
    target_image_opts: bool = False
    compress: bool = False
    bitmaps: bool = False
    backing: str | None = None
    snapshot: str | None = None
    sparse: int = DEFAULT_SPARSE


def _parse(args: list[str]) -> tuple[CommonOptions, _ConvertOptions]:
    parsed = parse_common(
        args,
        "hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:",
        [
            "help",
            "object=",
            "image-opts",
            "target-image-opts",
            "salvage",
            "target-is-zero",
            "bitmaps",
            "force-share",
        ],
    )
    options = _ConvertOptions()
    for opt, value in parsed.rest:
        if opt == "-O":
            options.out_fmt, options.out_fmt_given = value, True
        elif opt == "-o":
            options.option_texts.append(option_list(value))
        elif opt == "-p":
            options.show_progress = True
        elif opt == "-n":
            options.skip_create = True
        elif opt == "-c":
            options.compress = True
        elif opt == "-B":
            options.backing = value
        elif opt == "-l":
            options.snapshot = value
        elif opt == "-S":
            sparse = size_option(value, "buffer size for sparse output")
            options.sparse = sparse
            if sparse % SPARSE_UNIT or sparse > SPARSE_MAX:
                raise Failure(
                    "Invalid buffer size for sparse output specified. Valid sizes are multiples of "
                    f"{SPARSE_UNIT} up to {SPARSE_MAX}. Select 0 to disable sparse detection "
                    "(fully allocates output)."
                )
        elif opt == "-m":
            if not value.isdigit() or not 1 <= int(value) <= MAX_COROUTINES:
                raise Failure(
                    "Invalid number of coroutines. Allowed number of coroutines is between 1 and "
                    f"{MAX_COROUTINES}"
                )
        elif opt == "-r":
            size_option(value, "rate limit")
        elif opt == "--target-is-zero":
            options.target_is_zero = True
        elif opt == "--target-image-opts":
            options.target_image_opts = True
        elif opt == "--bitmaps":
            options.bitmaps = True
    if options.target_is_zero and not options.skip_create:
        raise Failure("--target-is-zero requires use of -n flag")
    if options.target_image_opts and not options.skip_create:
        raise Failure("--target-image-opts requires use of -n flag")
    if options.skip_create and options.option_texts:
        raise Failure("-o has no effect when skipping image creation")
    if options.target_image_opts and options.out_fmt_given:
        raise Failure("--image-opts and --format are mutually exclusive")
    return parsed, options


def cmd_convert(args: list[str], rep: Reporter, host: Host) -> int:
    """``convert [-f fmt] [-O output_fmt] [-o options] [-n] [-p] [-q] [-U] ... filename [...] output``.

    Every option qemu-img 7.2 takes is accepted. ``-t`` is the target's cache mode, ``unsafe``
    (no flush) by default as in qemu-img; ``-T`` is the sources' (they are only read, and blockfmt
    reads through the page cache in every mode). ``-m``, ``-W``, ``-r``, ``-C`` and ``--salvage``
    tune how QEMU schedules its I/O and change nothing in the result, so they are checked and kept
    unused. What the formats cannot do (compression, backing files, bitmaps, internal snapshots)
    is refused with QEMU's texts.
    """
    parsed, options = _parse(args)
    out_fmt = options.out_fmt
    pairs = parse_option_list(",".join(options.option_texts))
    if any(key in HELP_OPTIONS for key, _ in pairs):
        return option_help(rep, host, out_fmt)
    operands = parsed.operands
    if len(operands) < 2:
        raise Failure("Must specify image file name")
    *source_names, target = operands
    # typed before any source is opened, so a bad option fails first, as in qemu-img
    create_options = None if options.skip_create else coerce_create_options(host.spec(out_fmt), pairs)
    cache = parsed.cache or DEFAULT_TARGET_CACHE
    with contextlib.ExitStack() as stack:
        sources = [
            stack.enter_context(
                open_parsed(
                    rep, host, parsed, name, read_only=True, cache=parsed.source_cache or CacheMode.WRITEBACK
                )
            )
            for name in source_names
        ]
        if options.snapshot is not None:
            raise Failure(snapshot_refusal(sources[0].format))
        if options.bitmaps:
            raise Failure("Source lacks bitmap support")
        if options.compress:
            raise Failure("Compression not supported for this file format")
        if options.backing is not None and not options.skip_create:
            raise Failure(f"Backing file not supported for file format '{out_fmt}'")
        progress = ProgressPrinter(rep) if options.show_progress and not parsed.quiet else None
        try:
            if len(sources) == 1 and not options.skip_create:
                from .. import convert as convert_module

                convert_module.convert(
                    sources[0], target, out_fmt, options=create_options, progress=progress, cache=cache
                )
            else:
                _copy_into_target(rep, host, sources, target, options, create_options, progress, cache)
        except BlockFormatError as err:
            if isinstance(err, Failure | Reported):
                raise
            raise Reported(err, f"{target}: error while converting {out_fmt}: ") from err
        finally:
            if progress is not None:
                progress.end()
    return EXIT_OK


def _copy_into_target(
    rep: Reporter,
    host: Host,
    sources: list[Image],
    target: str,
    options: _ConvertOptions,
    create_options: CreateOptions | None,
    progress: ProgressPrinter | None,
    cache: CacheMode,
) -> None:
    """The sources one after the other into *target*: an existing image with ``-n``, else a new
    one, created here and removed again on failure."""
    total = sum(source.size for source in sources)
    if not options.skip_create:
        from ..api import create

        create(target, options.out_fmt, total, create_options, host=host)
    try:
        with open_image(
            rep,
            host,
            target,
            None if options.target_image_opts else options.out_fmt,
            read_only=False,
            image_opts=options.target_image_opts,
            cache=cache,
        ) as output:
            if output.size < total:
                raise Failure("output file is smaller than input file")
            zero_first = options.skip_create and not options.target_is_zero  # a new image reads as zeros
            _copy_into(output, sources, progress, zero_first=zero_first, granule=options.sparse)
    except BaseException:
        if not options.skip_create:
            with contextlib.suppress(OSError):
                os.unlink(target)
        raise


def _copy_into(
    output: Image,
    sources: list[Image],
    progress: ProgressPrinter | None,
    *,
    zero_first: bool,
    granule: int = DEFAULT_SPARSE,
) -> None:
    """Write the sources one after the other into *output*.

    Runs of *granule* zero bytes (``-S``) are not written as data: with *zero_first* they are
    zeroed (the target may hold old bytes there), without it (``--target-is-zero``) left alone,
    as qemu-img does. A *granule* of 0 writes every byte.
    """
    total = sum(source.size for source in sources) or 1
    base = 0
    buffer = bytearray(COPY_CHUNK)
    for source in sources:
        for extent in source.map():
            for offset in range(extent.offset, extent.offset + extent.length, COPY_CHUNK):
                length = min(COPY_CHUNK, extent.offset + extent.length - offset)
                view = memoryview(buffer)[:length]
                if extent.data:
                    source.readinto_at(offset, view)
                    _write_nonzero(output, base + offset, view, granule, zero_first)
                elif zero_first:
                    output.write_zeroes(base + offset, length)
                if progress is not None:
                    progress(100.0 * (base + offset + length) / total)
        base += source.size
    output.flush()


def _write_nonzero(output: Image, offset: int, view: memoryview, granule: int, zero_first: bool) -> None:
    """Write *view* at *offset*, runs of all-zero granules as zeroes (or not at all)."""
    if not granule:
        output.write_at(offset, view)
        return
    run_start, run_zero = 0, None
    for pos in range(0, len(view), granule):
        piece = view[pos : pos + granule]
        zero = _ZEROS.startswith(piece)  # memcmp; memoryview == compares item by item, ~80x slower
        if run_zero is None:
            run_zero = zero
        elif zero != run_zero:
            _flush_run(output, offset, view, run_start, pos, run_zero, zero_first)
            run_start, run_zero = pos, zero
    _flush_run(output, offset, view, run_start, len(view), bool(run_zero), zero_first)


def _flush_run(
    output: Image, offset: int, view: memoryview, start: int, end: int, zero: bool, zero_first: bool
) -> None:
    if not zero:
        output.write_at(offset + start, view[start:end])
    elif zero_first and end > start:
        output.write_zeroes(offset + start, end - start)


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
