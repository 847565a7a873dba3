"""``dd``: copy a byte range of an image into a new image, with dd(1)-style operands.

The range and the output size follow qemu-img 7.2 exactly, including its reading of ``count``:
the copy ends at ``count * bs`` bytes *of the input* (not after ``count`` blocks past ``skip``),
so ``skip=2 count=40`` copies 38 blocks. The copy itself goes in large chunks whatever ``bs``
is (the bytes written are the same), and all-zero chunks are left to the fresh output, which reads
as zeros already.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from ..errors import BlockFormatError
from .args import INT64_MAX
from .img_common import DEFAULT_FORMAT, Failure, Reported, open_image, open_parsed, parse_common, size_option
from .report import EXIT_OK, Reporter

if TYPE_CHECKING:
    from ..host import Host
    from ..image import Image

__all__ = ["cmd_dd"]

DEFAULT_BLOCK_SIZE = 512
INT_MAX = (1 << 31) - 1
COPY_CHUNK = 4 << 20
_ZEROS = bytes(COPY_CHUNK)


def cmd_dd(args: list[str], rep: Reporter, host: Host) -> int:
    """``dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=n] [count=n] [skip=n] if=input of=output``."""
    parsed = parse_common(args, "hf:O:U", ["help", "image-opts", "force-share", "object="])
    out_fmt = next((value for opt, value in reversed(parsed.rest) if opt == "-O"), DEFAULT_FORMAT)
    block_size, count, skip = DEFAULT_BLOCK_SIZE, None, None
    files: dict[str, str] = {}
    for operand in parsed.operands:
        key, sep, value = operand.partition("=")
        if not sep or key not in ("bs", "count", "skip", "if", "of"):
            raise Failure(f"unrecognized operand {key}")
        if key == "bs":
            block_size = size_option(value, "bs")
            if not 0 < block_size <= INT_MAX:
                raise Failure(f"Invalid bs specified. Must be between 1 and {INT_MAX}.")
        elif key == "count":
            count = size_option(value, "count")
        elif key == "skip":
            skip = size_option(value, "skip")
        else:
            files[key] = value
    if "if" not in files or "of" not in files:
        raise Failure("Must specify both input and output files")
    if out_fmt not in host.formats:
        raise Failure("Unknown file format")
    source_name, target = files["if"], files["of"]
    with open_parsed(rep, host, parsed, source_name, read_only=True) as source:
        end = source.size
        if count is not None and count <= INT64_MAX // block_size and count * block_size < end:
            end = count * block_size
        skip_beyond = skip is not None and (skip > INT64_MAX // block_size or end < skip * block_size)
        start = end if skip_beyond else (skip or 0) * block_size
        _copy_to_new(rep, host, source, start, end, target, out_fmt)
        if skip_beyond:
            rep.error(f"{source_name}: cannot skip to specified offset")
    return EXIT_OK


def _copy_to_new(
    rep: Reporter, host: Host, source: Image, start: int, end: int, target: str, fmt: str
) -> None:
    """Create *target* with ``end - start`` bytes and copy the source range into it.

    Interrupted or failed after creating the target, it removes the target again, so no partial
    output is left behind (qemu-img leaves its half-copied file).
    """
    from ..api import create

    try:
        create(target, fmt, end - start, host=host)
    except BlockFormatError as err:
        raise Reported(err, f"{target}: error while creating output image: ") from err
    try:
        with open_image(rep, host, target, fmt, read_only=False) as output:
            buffer = bytearray(COPY_CHUNK)
            view = memoryview(buffer)
            for offset in range(start, end, COPY_CHUNK):
                length = min(COPY_CHUNK, end - offset)
                source.readinto_at(offset, view[:length])
                if view[:length] != _ZEROS[:length]:
                    output.write_at(offset - start, view[:length])
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise
