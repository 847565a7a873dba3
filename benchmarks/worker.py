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
    python worker.py rand4k PATH COUNT                    # COUNT random 4 KiB readinto_at calls
    python worker.py rand4k-libvhdi PATH COUNT            # the same offsets through pyvhdi
    python worker.py rand4k-dissect PATH COUNT            # ... through dissect.hypervisor's VHDX
    python worker.py rand4k-preadv PATH COUNT             # os.preadv of 4 KiB at random file offsets

The rand4k operations time the reads only (offsets drawn and the image opened before), in CPU
time of this process.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

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


#: the 4 KiB reads of the rand4k operations, and the seed of their offsets
RANDOM_READ = 4096
RANDOM_SEED = 20240601


def _offsets(size: int, count: str) -> list[int]:
    rng = random.Random(RANDOM_SEED)
    return [rng.randrange(size // RANDOM_READ) * RANDOM_READ for _ in range(int(count))]


def _timed(read: Callable[[int], Any], offsets: list[int]) -> float:
    """CPU seconds (user + system) of reading at every offset: the calls are all in this one
    thread and never wait for a device (the image is in the page cache), so this is their cost,
    which a loaded machine does not inflate as it inflates wall time."""
    start = time.process_time()
    for offset in offsets:
        read(offset)
    return time.process_time() - start


def op_rand4k(path: str, count: str) -> float:
    buf = bytearray(RANDOM_READ)
    with blockfmt.open(path, "vhdx") as img:
        offsets = _offsets(img.size, count)
        readinto_at = img.readinto_at
        return _timed(lambda offset: readinto_at(offset, buf), offsets)


def op_rand4k_libvhdi(path: str, count: str) -> float:
    import pyvhdi

    handle = pyvhdi.file()
    handle.open(path)
    try:
        read = handle.read_buffer_at_offset
        return _timed(lambda offset: read(RANDOM_READ, offset), _offsets(handle.get_media_size(), count))
    finally:
        handle.close()


def op_rand4k_dissect(path: str, count: str) -> float:
    from dissect.hypervisor.disk.vhdx import VHDX

    with open(path, "rb") as file:
        disk = VHDX(file)

        def read(offset: int) -> None:
            disk.seek(offset)
            disk.read(RANDOM_READ)

        return _timed(read, _offsets(disk.size, count))


def op_rand4k_preadv(path: str, count: str) -> float:
    fd = os.open(path, os.O_RDONLY)
    try:
        buffers = [bytearray(RANDOM_READ)]
        return _timed(lambda offset: os.preadv(fd, buffers, offset), _offsets(os.fstat(fd).st_size, count))
    finally:
        os.close(fd)


OPERATIONS: dict[str, Callable[..., None]] = {
    "convert": op_convert,
    "read": op_read,
    "write": op_write,
    "open": op_open,
}
#: operations that time themselves (set-up excluded) and return the seconds
TIMED_OPERATIONS: dict[str, Callable[..., float]] = {
    "rand4k": op_rand4k,
    "rand4k-libvhdi": op_rand4k_libvhdi,
    "rand4k-dissect": op_rand4k_dissect,
    "rand4k-preadv": op_rand4k_preadv,
}


def main(argv: list[str]) -> int:
    if argv[0] in TIMED_OPERATIONS:
        seconds = TIMED_OPERATIONS[argv[0]](*argv[1:])
    else:
        start = time.perf_counter()
        OPERATIONS[argv[0]](*argv[1:])
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
