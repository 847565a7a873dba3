"""qemu-io's other commands: ``open``, ``close``, ``reopen``, ``map``, ``alloc``, ``length``,
``info``, ``truncate``, ``sleep``, ``sigraise``, ``abort`` and the blkdebug breakpoint commands."""

from __future__ import annotations

import functools
import os
import re
import signal
import time
from typing import Any

from ...errors import BlockFormatError
from ...image import Image
from ..render import cvtstr
from .rw import errno_of
from .session import (
    CACHE_MODES,
    CommandFailed,
    CommandInfo,
    OpenSettings,
    Session,
    apply_open_option,
    getopt_pairs,
    number,
    parse_options,
)

__all__ = ["COMMANDS"]

#: alloc's default count: one sector
SECTOR = 512
#: Linux's _NSIG: signal numbers must stay below it
NSIG = 65
PREALLOC_MODES = ("off", "metadata", "falloc", "full")
#: how much of a preallocated extension is written at once
PREALLOC_CHUNK = 1 << 20
_DECIMAL = re.compile(r"\s*\+?\d+")


def open_f(session: Session, argv: list[str]) -> None:
    """``open [-rsCnkU] [-t cache] [-d discard] [-o options] [path]``: probes the format (the
    command line's ``-f`` does not apply); without a path the ``-o`` options name the image."""
    pairs, operands = getopt_pairs(session, OPEN, argv, "snCro:kt:d:U")
    settings = OpenSettings()
    for opt, value in pairs:
        if opt == "-o":
            from ..blockdev_opts import parse_qemu_opts  # only open -o needs the option syntax

            tree = parse_qemu_opts(value, lambda text: session.rep.error(f"warning: {text}"))
            settings.options = {**settings.options, **tree}
        elif not apply_open_option(session.rep, settings, opt, value):
            raise CommandFailed
    if len(operands) > 1:
        session.rep.out(OPEN.usage())
        raise CommandFailed
    session.format = None
    session.open(operands[0] if operands else None, settings)


def close_f(session: Session, argv: list[str]) -> None:
    """``close``."""
    session.close()


def reopen_f(session: Session, argv: list[str]) -> None:
    """``reopen [(-r|-w)] [-c cache] [-o options]``: the same image, opened again with new flags.

    Of the runtime options QEMU's block layer can change on these nodes, ``-o`` takes
    ``read-only``, ``auto-read-only``, ``cache.direct``, ``cache.no-flush``, ``discard`` and
    ``detect-zeroes`` (also on the ``file`` child); anything else is refused as QEMU refuses an
    option a driver cannot change. Checks come in QEMU's order: the options one by one, then
    -r/-w against ``read-only`` and -c against the cache options, then the values, then what
    cannot change, then the node's users.
    """
    pairs, operands = getopt_pairs(session, REOPEN, argv, "c:o:rw")
    settings = OpenSettings(**vars(session.settings))
    options: dict[str, str] = {}
    read_only: bool | None = None
    cache_given = False
    for opt, value in pairs:
        if opt == "-c":
            if value not in CACHE_MODES:
                session.rep.error(f"Invalid cache option: {value}")
                raise CommandFailed
            settings.direct, settings.writethrough, settings.no_flush = CACHE_MODES[value]
            cache_given = True
        elif opt == "-o":
            from ..blockdev_opts import parse_qemu_opts

            tree = parse_qemu_opts(value, lambda text: session.rep.error(f"warning: {text}"))
            options.update(_dotted(tree))
        elif read_only is not None:
            session.rep.error("Only one -r/-w option may be given")
            raise CommandFailed
        else:
            read_only = opt == "-r"
    if operands:
        session.rep.out(REOPEN.usage())
        raise CommandFailed
    if "read-only" in options and read_only is not None:
        session.rep.error("Cannot set both -r/-w and 'read-only'")
        raise CommandFailed
    if cache_given and any(key.startswith("cache.") for key in options):
        session.rep.error("Cannot set both -c and the cache options")
        raise CommandFailed
    flags = {key: _on_off(session, key, options[key]) for key in options if key in REOPEN_FLAGS}
    for key in options:
        child_key = key.removeprefix(f"{FILE_CHILD}.")
        if child_key not in REOPEN_FLAGS and child_key not in REOPEN_MODES:
            session.rep.error(f"Cannot change the option '{child_key}'")
            raise CommandFailed
    image = session.current
    if flags.get("read-only") and not image.read_only:
        # -o read-only=on leaves qemu-io's own write permission in place; only -r drops it
        session.rep.error(f"Read-only block node '{_generated_node_name()}' cannot support read-write users")
        raise CommandFailed
    if "cache.direct" in flags:
        settings.direct = flags["cache.direct"]
    if "cache.no-flush" in flags:
        settings.no_flush = flags["cache.no-flush"]
    if "read-only" in flags:
        read_only = flags["read-only"]
    if read_only is not None:
        settings.read_only = read_only
    filename, format = image.filename, image.format
    if settings.read_only == image.read_only and settings.no_flush == session.settings.no_flush:
        session.settings = settings
        return
    session.close()
    session.format = format
    settings.snapshot = False  # reopening a snapshot would lose its writes: keep the same image
    session.open(filename, settings)


#: boolean runtime options a reopen may change, and the others it may change
REOPEN_FLAGS = ("read-only", "auto-read-only", "cache.direct", "cache.no-flush")
REOPEN_MODES = ("discard", "detect-zeroes")
FILE_CHILD = "file"


def _dotted(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested option tree back as QEMU's flat dotted keys (``file.cache.direct``)."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _on_off(session: Session, key: str, value: str) -> bool:
    """A QemuOpts boolean: ``on`` or ``off`` only."""
    if value not in ("on", "off"):
        session.rep.error(f"Parameter '{key}' expects 'on' or 'off'")
        raise CommandFailed
    return value == "on"


@functools.cache
def _generated_node_name() -> str:
    """The name QEMU generates for a node the user did not name: ``#block``, a counter and two
    random digits (the iotests filter it to NODE_NAME); one per process, as qemu-io has one node."""
    import random

    return f"#block1{random.randrange(100):02d}"


def map_f(session: Session, argv: list[str]) -> None:
    """``map``: runs of allocated and unallocated bytes, as this image alone decides them.

    A range is allocated when the image itself (depth 0, not a backing file) says what it reads
    as (data or zeros), which for an image without a backing file is everywhere, as in QEMU.
    """
    image = session.current
    try:
        extents = image.map()
    except BlockFormatError as err:
        session.rep.out(f"is_allocated failed: {os.strerror(errno_of(err))}\n")
        raise CommandFailed from err
    runs: list[tuple[int, int, bool]] = []
    for extent in extents:
        allocated = extent.depth == 0 and (extent.data or extent.zero)
        if runs and runs[-1][2] == allocated:
            start, length, _ = runs[-1]
            runs[-1] = (start, length + extent.length, allocated)
        else:
            runs.append((extent.offset, extent.length, allocated))
    for start, length, allocated in runs:
        session.rep.out(
            f"{cvtstr(length)} (0x{length:x}) bytes {'   ' if allocated else 'not'} allocated "
            f"at offset {cvtstr(start)} (0x{start:x})\n"
        )


def alloc_f(session: Session, argv: list[str]) -> None:
    """``alloc offset [count]``: how many of *count* bytes (512 by default) are allocated."""
    offset = number(session, argv[1])
    count = number(session, argv[2]) if len(argv) > 2 else SECTOR
    image = session.current
    count = max(0, min(count, image.size - offset))
    allocated = 0
    if count:
        try:
            allocated = sum(e.length for e in image.map(offset, count) if e.depth == 0 and (e.data or e.zero))
        except BlockFormatError as err:
            session.rep.out(f"is_allocated failed: {os.strerror(errno_of(err))}\n")
            raise CommandFailed from err
    session.rep.out(f"{allocated}/{count} bytes allocated at offset {cvtstr(offset)}\n")


def length_f(session: Session, argv: list[str]) -> None:
    """``length``: the virtual disk size."""
    session.rep.out(f"{cvtstr(session.current.size)}\n")


def info_f(session: Session, argv: list[str]) -> None:
    """``info``: format name, cluster size (0 for raw) and the VM state offset (always 0 here)."""
    image = session.current
    cluster = image.info().cluster_size or 0
    session.rep.out(
        f"format name: {image.format}\ncluster size: {cvtstr(cluster)}\nvm state offset: 0 bytes\n"
    )


def truncate_f(session: Session, argv: list[str]) -> None:
    """``truncate [-m prealloc_mode] off``: resize the disk, as QEMU does for raw files only.

    QEMU 7.2's vhdx and vdi drivers have no truncate, so qemu-io refuses them (``qemu-img resize``
    is where blockfmt resizes those). A raw file is cut or extended to exactly *off* bytes; with
    ``falloc`` or ``full`` the extension is allocated by writing zeros (see docs/differences.md).
    The offset is parsed from the first operand, while a parse error names ``argv[1]``: that is
    what qemu-io 7.2 prints.
    """
    opts, operands = parse_options(session, TRUNCATE, argv, "m:")
    mode = opts.get("-m", "off")
    if mode not in PREALLOC_MODES:
        session.rep.error(f"Invalid preallocation mode '{mode}'")
        raise CommandFailed
    if not operands:  # qemu-io 7.2 crashes here (it parses a missing argument); the usage is kinder
        session.rep.out(TRUNCATE.usage())
        raise CommandFailed
    size = number(session, operands[0], shown=argv[1])  # further operands are ignored, as in QEMU
    image = session.current
    if not image.spec.data_only:
        session.rep.error("Image format driver does not support resize")
        raise CommandFailed
    if mode == "metadata":  # file-posix knows only off, falloc and full
        session.rep.error(f"Unsupported preallocation mode: {mode}")
        raise CommandFailed
    if mode != "off" and size < image.size:
        session.rep.error("Cannot use preallocation for shrinking files")
        raise CommandFailed
    old_size = image.size
    try:
        image.resize(size, shrink=True)
        if mode != "off":
            _allocate_zeros(image, old_size, size)
    except BlockFormatError as err:
        session.rep.error(err.message)
        raise CommandFailed from err


def _allocate_zeros(image: Image, start: int, end: int) -> None:
    """Write zeros over ``[start, end)``, a chunk at a time, so the range is allocated."""
    zeros = memoryview(bytes(min(PREALLOC_CHUNK, end - start)))
    for offset in range(start, end, PREALLOC_CHUNK):
        image.write_at(offset, zeros[: min(PREALLOC_CHUNK, end - offset)])


def sleep_f(session: Session, argv: list[str]) -> None:
    """``sleep ms``."""
    if not _DECIMAL.fullmatch(argv[1]):
        session.rep.out(f"{argv[1]} is not a valid number\n")
        raise CommandFailed
    time.sleep(int(argv[1]) / 1000)


def sigraise_f(session: Session, argv: list[str]) -> None:
    """``sigraise signal``: the signal's default action, as C's ``raise`` gives it."""
    signum = number(session, argv[1])
    if signum >= NSIG:
        session.rep.out(f"signal argument '{argv[1]}' is too large to be a valid signal\n")
        raise CommandFailed
    if signum:
        try:
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL and SIGSTOP keep their only action
        os.kill(os.getpid(), signum)


def abort_f(session: Session, argv: list[str]) -> None:
    """``abort``: crash on purpose, without closing the image (tests use it to leave it dirty);
    output still buffered is lost, as in qemu-io."""
    os.abort()


def break_f(session: Session, argv: list[str]) -> None:
    """``break event tag``: only blkdebug has breakpoints, and no node here is blkdebug."""
    session.rep.out("Could not set breakpoint: Operation not supported\n")
    raise CommandFailed


def remove_break_f(session: Session, argv: list[str]) -> None:
    session.rep.out(f"Could not remove breakpoint {argv[1]}: Operation not supported\n")
    raise CommandFailed


def resume_f(session: Session, argv: list[str]) -> None:
    session.rep.out("Could not resume request: Operation not supported\n")
    raise CommandFailed


def wait_break_f(session: Session, argv: list[str]) -> None:
    """``wait_break tag``: qemu-io would wait forever for a request that never stops; we refuse."""
    session.rep.out("Could not wait for breakpoint: Operation not supported\n")
    raise CommandFailed


OPEN = CommandInfo(
    "open",
    open_f,
    1,
    -1,
    "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
    "open the file specified by path",
    needs_file=False,
    alias="o",
)
CLOSE = CommandInfo("close", close_f, 0, 0, None, "close the current open file", alias="c")
REOPEN = CommandInfo(
    "reopen", reopen_f, 0, -1, "[(-r|-w)] [-c cache] [-o options]", "reopens an image with new options"
)
MAP = CommandInfo("map", map_f, 0, 0, "", "prints the allocated areas of a file")
ALLOC = CommandInfo("alloc", alloc_f, 1, 2, "offset [count]", "checks if offset is allocated in the file")
LENGTH = CommandInfo("length", length_f, 0, 0, None, "gets the length of the current file")
INFO = CommandInfo("info", info_f, 0, 0, None, "prints information about the current file")
TRUNCATE = CommandInfo(
    "truncate",
    truncate_f,
    1,
    3,
    "[-m prealloc_mode] off",
    "truncates the current file at the given offset",
    writes=True,
)
SLEEP = CommandInfo(
    "sleep", sleep_f, 1, 1, None, "waits for the given value in milliseconds", needs_file=False
)
SIGRAISE = CommandInfo("sigraise", sigraise_f, 1, 1, "signal", "raises a signal", needs_file=False)
ABORT = CommandInfo("abort", abort_f, 0, 0, None, "simulate a program crash using abort(3)", needs_file=False)
BREAK = CommandInfo(
    "break", break_f, 2, 2, "event tag", "sets a breakpoint on event and tags the stopped request as tag"
)
REMOVE_BREAK = CommandInfo("remove_break", remove_break_f, 1, 1, "tag", "remove a breakpoint by tag")
RESUME = CommandInfo("resume", resume_f, 1, 1, "tag", "resumes the request tagged as tag")
WAIT_BREAK = CommandInfo("wait_break", wait_break_f, 1, 1, "tag", "waits for the suspension of a request")

COMMANDS = (
    OPEN,
    CLOSE,
    REOPEN,
    MAP,
    ALLOC,
    LENGTH,
    INFO,
    TRUNCATE,
    SLEEP,
    SIGRAISE,
    ABORT,
    BREAK,
    REMOVE_BREAK,
    RESUME,
    WAIT_BREAK,
)
