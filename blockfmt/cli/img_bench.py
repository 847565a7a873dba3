"""``bench``: time a stream of equal read or write requests, with qemu-img's options and lines.

qemu-img keeps ``-d`` requests in flight through its coroutines; blockfmt's I/O is synchronous, so
the requests go one after the other (``-d`` only shows in the first line). Which bytes are read or
written is the same: request *i* starts where qemu-img's would, wrapping around at the end.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..cache import CacheMode
from ..errors import BlockFormatError, InvalidOptionError
from .args import parse_pattern
from .img_common import Failure, Reported, open_parsed, parse_common, size_option
from .report import EXIT_OK, Reporter, UsageError, open_context

if TYPE_CHECKING:
    from ..host import Host
    from ..image import Image

__all__ = ["cmd_bench"]

DEFAULT_COUNT = 75000
DEFAULT_DEPTH = 64
DEFAULT_BUFFER = 4096
INT_MAX = (1 << 31) - 1
AIO_MODES = ("threads", "native", "io_uring")


def _whole(text: str, what: str, minimum: int) -> int:
    """A plain decimal number as qemu-img's ``qemu_strtoi``/``qemu_strtoul`` take it."""
    try:
        value = int(text, 10)
    except ValueError:
        raise Failure(f"Invalid {what} specified") from None
    if not minimum <= value <= INT_MAX:
        raise Failure(f"Invalid {what} specified")
    return value


def cmd_bench(args: list[str], rep: Reporter, host: Host) -> int:
    """``bench [-c count] [-d depth] [-f fmt] [--flush-interval=n] [-i aio] [-n] [--no-drain] [-o offset]
    [--pattern=p] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] filename``."""
    parsed = parse_common(
        args,
        "hc:d:f:ni:o:qs:S:t:wU",
        ["help", "flush-interval=", "image-opts", "pattern=", "no-drain", "force-share", "object="],
        source_cache=None,
    )
    count, depth, offset, buffer_size, step = DEFAULT_COUNT, DEFAULT_DEPTH, 0, DEFAULT_BUFFER, None
    write, drain = False, True
    cache = CacheMode.WRITEBACK
    pattern, flush_interval = 0, 0
    for opt, value in parsed.rest:
        if opt == "-c":
            count = _whole(value, "request count", 0)
        elif opt == "-d":
            depth = _whole(value, "queue depth", 1)
        elif opt == "-o":
            offset = size_option(value, "offset")
        elif opt == "-s":
            buffer_size = size_option(value, "buffer size")
        elif opt == "-S":
            step = size_option(value, "step_size")
        elif opt == "-w":
            write = True
        elif opt == "--pattern":
            byte = parse_pattern(value)
            if byte is None:
                raise Failure("Invalid pattern byte specified")
            pattern = byte
        elif opt == "--flush-interval":
            flush_interval = _whole(value, "flush interval", 0)
        elif opt == "--no-drain":
            drain = False
        elif opt == "-i" and value not in AIO_MODES:
            raise Failure(f"Invalid aio option: {value}")
        elif opt == "-t":
            try:
                cache = CacheMode.parse(value)
            except InvalidOptionError:
                raise Failure("Invalid cache mode") from None
    if len(parsed.operands) != 1:
        raise UsageError("Expecting one image file name")
    if flush_interval and not write:
        raise Failure("--flush-interval is only available in write tests")
    if flush_interval and flush_interval < depth and not drain:
        raise Failure("Flush interval can't be smaller than depth")
    filename = parsed.operands[0]
    if write and parsed.force_share:
        raise Failure(f"{open_context(filename)}force-share=on can only be used with read-only images")
    step = buffer_size if step is None else step
    with open_parsed(rep, host, parsed, filename, read_only=not write, cache=cache) as image:
        rep.out(
            f"Sending {count} {'write' if write else 'read'} requests, {buffer_size} bytes each, "
            f"{depth} in parallel (starting at offset {offset}, step size {step})\n"
        )
        if flush_interval:
            rep.out(f"Sending flush every {flush_interval} requests\n")
        started = time.monotonic()
        try:
            _run(
                image, count, offset, buffer_size, step, write, bytes([pattern]) * buffer_size, flush_interval
            )
        except BlockFormatError as err:
            raise Reported(err, "Failed request: ") from err
        elapsed = time.monotonic() - started
    rep.out(f"Run completed in {elapsed:3.3f} seconds.\n")
    return EXIT_OK


def _offsets(image_size: int, count: int, offset: int, size: int, step: int) -> list[int]:
    """Where qemu-img's requests start: each *step* after the last, modulo the disk size.

    :raises BlockFormatError: when one of them would reach past the end. qemu-img has its
        requests in flight together and exits at the first failure, before the others land; here
        the run is refused before anything is read or written.
    """
    offsets = []
    for _ in range(count):
        if offset + size > image_size:
            raise BlockFormatError("Input/output error")
        offsets.append(offset)
        offset = 0 if image_size <= size else (offset + step) % image_size
    return offsets


def _run(
    image: Image, count: int, offset: int, size: int, step: int, write: bool, data: bytes, flush_every: int
) -> None:
    """Issue the requests one after the other, flushing every *flush_every* writes."""
    buffer = bytearray(size)
    for done, start in enumerate(_offsets(image.size, count, offset, size, step), 1):
        if write:
            image.write_at(start, data)
        else:
            image.readinto_at(start, buffer)
        if flush_every and done % flush_every == 0:
            image.flush()
    if write:
        image.flush()
