"""The blockfmt side of one benchmark case, run in its own process by ``bench.py``.

Each operation mirrors one qemu tool command line, request for request, and prints one JSON
object: ``{"seconds": <time of the operation inside this process>}``. The operation time starts
after ``import blockfmt`` and includes loading the format plugins (the first ``open``); the
parent process measures the whole process separately, interpreter start included.

Usage::

    python worker.py convert SRC SRC_FMT DST DST_FMT      # qemu-img convert -f SRC_FMT -O DST_FMT
    python worker.py read PATH FMT REQUEST                # qemu-io -c "read OFF REQUEST" for each OFF
    python worker.py write PATH FMT REQUEST STEP COUNT    # qemu-img bench -w -d 1 -s REQUEST -S STEP -c COUNT
                                                          #   --pattern=0xa5
    python worker.py open PATH FMT                        # qemu-img info
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import blockfmt
from blockfmt.convert import convert

#: the byte every benchmark write carries (``qemu-img bench --pattern``; its default 0 could let a
#: format treat the writes as zero writes)
WRITE_PATTERN = 0xA5


def op_convert(src: str, src_fmt: str, dst: str, dst_fmt: str) -> None:
    with blockfmt.open(src, src_fmt) as img:
        convert(img, dst, dst_fmt)


def op_read(path: str, fmt: str, request: str) -> None:
    length = int(request)
    buf = memoryview(bytearray(length))
    with blockfmt.open(path, fmt) as img:
        size = img.size
        for offset in range(0, size - size % length, length):
            img.readinto_at(offset, buf)


def op_write(path: str, fmt: str, request: str, step: str, count: str) -> None:
    """qemu-img bench's write pattern: offsets 0, STEP, 2*STEP, ... wrapping at the disk end."""
    data = memoryview(bytes([WRITE_PATTERN]) * int(request))
    stride = int(step)
    with blockfmt.open(path, fmt, read_only=False) as img:
        size = img.size
        offset = 0
        for _ in range(int(count)):
            if offset + len(data) > size:
                offset = 0
            img.write_at(offset, data)
            offset += stride


def op_open(path: str, fmt: str) -> None:
    with blockfmt.open(path, fmt) as img:
        img.info()


OPERATIONS: dict[str, Callable[..., None]] = {
    "convert": op_convert,
    "read": op_read,
    "write": op_write,
    "open": op_open,
}


def main(argv: list[str]) -> int:
    operation = OPERATIONS[argv[0]]
    start = time.perf_counter()
    operation(*argv[1:])
    print(json.dumps({"seconds": time.perf_counter() - start}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
