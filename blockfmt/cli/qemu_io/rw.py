"""qemu-io's I/O commands: ``read``, ``readv``, ``write``, ``writev``, their ``aio_`` twins,
``aio_flush``, ``discard`` and ``flush``.

Asynchronous requests run to completion before the command returns: qemu-io's order of
completions depends on its thread pool, and the iotests only use aio commands whose output does
not depend on it (one request, or requests whose offsets they filter).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from time import monotonic_ns
from typing import overload

from ...errors import (
    BlockFormatError,
    BlockIOError,
    ReadOnlyError,
    UnsupportedFeatureError,
    UnsupportedOperationError,
)
from ...image import Image
from .. import render
from .session import (
    REQUEST_MAX_BYTES,
    CommandFailed,
    CommandInfo,
    Session,
    number,
    parse_options,
    pattern_byte,
)

__all__ = ["COMMANDS"]

#: qemu-io fills write buffers with this byte unless ``-P`` says otherwise
DEFAULT_WRITE_PATTERN = 0xCD
SECTOR = 512
NANOSECONDS = 1_000_000_000


def errno_of(err: BlockFormatError) -> int:
    """The errno QEMU's block layer would return for *err* (qemu-io prints only its strerror)."""
    if isinstance(err, ReadOnlyError):
        return errno.EPERM
    if isinstance(err, UnsupportedOperationError | UnsupportedFeatureError):
        return errno.ENOTSUP
    if isinstance(err, BlockIOError) and err.errno:
        return err.errno
    return errno.EIO


def failed(session: Session, what: str, code: int) -> CommandFailed:
    """Print ``<what> failed: <strerror>`` and return the exception that ends the command."""
    session.rep.out(f"{what} failed: {os.strerror(code)}\n")
    return CommandFailed()


def run_request(session: Session, what: str, request: Callable[..., object], *args: object) -> int:
    """Run ``request(*args)``; an error fails the command with qemu-io's text. Returns nanoseconds
    taken. (Arguments rather than a closure: this runs once per command of a long script.)"""
    start = monotonic_ns()
    try:
        request(*args)
    except BlockFormatError as err:
        raise failed(session, what, errno_of(err)) from err
    return monotonic_ns() - start


def machine_report(total: int, ops: int, elapsed_ns: int) -> str:
    """``-C``: ``bytes,ops,H:MM:SS.ss,bytes/sec,ops/sec``."""
    seconds = elapsed_ns / NANOSECONDS
    whole = int(seconds)
    clock = f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60 + seconds - whole:05.2f}"
    rate, op_rate = (total / seconds, ops / seconds) if seconds else (float("inf"), float("inf"))
    return f"{total},{ops},{clock},{rate:.3f},{op_rate:.3f}\n"


def report(session: Session, opts: dict[str, str], op: str, offset: int, total: int, elapsed_ns: int) -> None:
    """The result lines of an I/O command, unless ``-q``; ``-C`` makes them machine-readable."""
    if "-q" in opts:
        return
    if "-C" in opts:
        session.rep.out(machine_report(total, 1, elapsed_ns))
    else:
        session.rep.out(render.io_report(op, offset, total, total, 1, elapsed_ns))


def offset_and_length(
    session: Session, offset_text: str, length_text: str, limit_text: str = ""
) -> tuple[int, int]:
    offset = number(session, offset_text)
    length = number(session, length_text)
    if length > REQUEST_MAX_BYTES:
        session.rep.out(f"length cannot exceed {REQUEST_MAX_BYTES}{limit_text}, given {length_text}\n")
        raise CommandFailed
    return offset, length


def vector_lengths(session: Session, texts: list[str]) -> list[int]:
    """The ``len [len..]`` of the vectored commands (qemu-io's ``create_iovec``)."""
    lengths = []
    for text in texts:
        length = number(session, text)
        if length > REQUEST_MAX_BYTES:
            session.rep.out(f"Argument '{text}' exceeds maximum size {REQUEST_MAX_BYTES}\n")
            raise CommandFailed
        lengths.append(length)
    return lengths


def verify(session: Session, buf: bytes | bytearray, pattern: int, offset: int) -> bool:
    """``-P``: every byte of *buf* must be *pattern*; prints qemu-io's complaint when not."""
    if buf.count(pattern) == len(buf):
        return True
    session.rep.out(f"Pattern verification failed at offset {offset}, {len(buf)} bytes\n")
    return False


# -------------------------------------------------------------------------
# what the commands of a family share
# -------------------------------------------------------------------------


def vector_request(session: Session, info: CommandInfo, operands: list[str]) -> tuple[int, int]:
    """``off len [len..]`` of the vectored commands: the offset and the total length."""
    if len(operands) < 2:
        session.rep.out(info.usage())
        raise CommandFailed
    return number(session, operands[0]), sum(vector_lengths(session, operands[1:]))


def read_and_report(
    session: Session,
    opts: dict[str, str],
    what: str,
    offset: int,
    count: int,
    pattern: int | None,
    checked: slice = slice(None),
) -> bool:
    """Read *count* bytes, check the *checked* part against ``-P``'s *pattern*, dump them for
    ``-v`` and report; returns whether the pattern matched (a failed read fails the command)."""
    buf = bytearray(count)
    elapsed = run_request(session, what, session.current.readinto_at, offset, buf)
    start = checked.start or 0
    ok = pattern is None or verify(session, buf[checked], pattern, offset + start)
    if "-v" in opts and "-q" not in opts:
        session.rep.out(render.dump_buffer(bytes(buf), offset))
    report(session, opts, "read", offset, count, elapsed)
    return ok


def write_and_report(
    session: Session, opts: dict[str, str], what: str, offset: int, count: int, data: bytes | None
) -> None:
    """Write *data* (zeros for None: ``-z``, unmapping them with ``-u``), flush for ``-f`` or a
    writethrough cache, and report."""
    flush = "-f" in opts or session.settings.writethrough
    if data is None:
        unmap = "-u" in opts and session.settings.discard
        elapsed = run_request(session, what, _write_zeroes, session.current, offset, count, unmap, flush)
    else:
        elapsed = run_request(session, what, _write, session.current, offset, data, flush)
    report(session, opts, "wrote", offset, count, elapsed)


def _write(image: Image, offset: int, data: bytes, flush: bool) -> None:
    image.write_at(offset, data)
    if flush:
        image.flush()


def _write_zeroes(image: Image, offset: int, count: int, unmap: bool, flush: bool) -> None:
    image.write_zeroes(offset, count, unmap=unmap)
    if flush:
        image.flush()


@overload
def pattern_option(session: Session, opts: dict[str, str], default: int) -> int: ...
@overload
def pattern_option(session: Session, opts: dict[str, str], default: None) -> int | None: ...
def pattern_option(session: Session, opts: dict[str, str], default: int | None) -> int | None:
    """``-P pattern``, or *default* without it."""
    return pattern_byte(session, opts["-P"]) if "-P" in opts else default


# -------------------------------------------------------------------------
# reads
# -------------------------------------------------------------------------


def read_f(session: Session, argv: list[str]) -> None:
    """``read [-abCqv] [-P pattern [-s off] [-l len]] off len``; a mismatch fails the command."""
    opts, operands = parse_options(session, READ, argv, "bCl:pP:qs:v")  # -a is listed, not taken
    pattern_count = number(session, opts["-l"]) if "-l" in opts else None
    pattern_offset = number(session, opts["-s"]) if "-s" in opts else 0
    pattern = pattern_option(session, opts, None)
    if len(operands) != 2:
        session.rep.out(READ.usage())
        raise CommandFailed
    offset, count = offset_and_length(session, *operands)
    if pattern is None and ("-l" in opts or "-s" in opts):
        session.rep.out(READ.usage())
        raise CommandFailed
    if pattern_count is None:
        pattern_count = count - pattern_offset
    if pattern_count < 0 or pattern_count + pattern_offset > count:
        session.rep.out("pattern verification range exceeds end of read data\n")
        raise CommandFailed
    if "-b" in opts:
        raise failed(session, "read", errno.ENOTSUP)  # no format here has a VM state area
    checked = slice(pattern_offset, pattern_offset + pattern_count)
    if not read_and_report(session, opts, "read", offset, count, pattern, checked):
        raise CommandFailed


def readv_f(session: Session, argv: list[str]) -> None:
    """``readv [-Cqv] [-P pattern] off len [len..]``: one read into several buffers."""
    opts, operands = parse_options(session, READV, argv, "CP:qv")
    pattern = pattern_option(session, opts, None)
    offset, count = vector_request(session, READV, operands)
    if not read_and_report(session, opts, "readv", offset, count, pattern):
        raise CommandFailed


def aio_read_f(session: Session, argv: list[str]) -> None:
    """``aio_read [-Ciqv] [-P pattern] off len [len..]``: succeeds once submitted, whatever happens."""
    opts, operands = parse_options(session, AIO_READ, argv, "CP:iqv")
    pattern = pattern_option(session, opts, None)
    if "-i" in opts:
        session.rep.out("injecting invalid read request\n")
        return
    offset, count = vector_request(session, AIO_READ, operands)
    try:
        read_and_report(session, opts, "readv", offset, count, pattern)
    except CommandFailed:
        pass  # the failure is the completion's, printed; the command itself succeeded


# -------------------------------------------------------------------------
# writes
# -------------------------------------------------------------------------


def write_f(session: Session, argv: list[str]) -> None:
    """``write [-bcCfnquz] [-P pattern | -s source_file] off len``."""
    opts, operands = parse_options(session, WRITE, argv, "bcCfnpP:qs:uz")
    if opts:
        check_write_options(session, opts)
    pattern = pattern_option(session, opts, DEFAULT_WRITE_PATTERN)
    if len(operands) != 2:
        session.rep.out(WRITE.usage())
        raise CommandFailed
    offset = number(session, operands[0])
    count = number(session, operands[1])
    if count > REQUEST_MAX_BYTES and "-n" not in opts:
        session.rep.out(f"length cannot exceed {REQUEST_MAX_BYTES} without -n, given {operands[1]}\n")
        raise CommandFailed
    if "-c" in opts or "-b" in opts:
        for value, name in ((offset, "offset"), (count, "count")):
            if value % SECTOR:
                session.rep.out(f"{value} is not a sector-aligned value for '{name}'\n")
                raise CommandFailed
        # no format here compresses or has a VM state area
        raise failed(session, "write", errno.ENOTSUP)
    if "-z" in opts:
        if "-n" in opts:
            raise failed(session, "write", errno.ENOTSUP)  # zero writes here may fall back to writing data
        data = None
    elif "-s" in opts:
        data = source_file(session, opts["-s"], count)
    else:
        data = bytes([pattern]) * count
    write_and_report(session, opts, "write", offset, count, data)


def check_write_options(session: Session, opts: dict[str, str]) -> None:
    """``write``'s rules about which options go together, in qemu-io's order."""
    if ("-z" in opts) + ("-P" in opts) + ("-s" in opts) > 1:
        session.rep.out("Only one of -z, -P, and -s can be specified at the same time\n")
        raise CommandFailed
    if "-f" in opts and ("-b" in opts or "-c" in opts):
        session.rep.out("-f and -b or -c cannot be specified at the same time\n")
        raise CommandFailed
    if "-u" in opts and "-z" not in opts:
        session.rep.out("-u requires -z to be specified\n")
        raise CommandFailed
    if "-n" in opts and "-z" not in opts:
        session.rep.out("-n requires -z to be specified\n")
        raise CommandFailed


def source_file(session: Session, path: str, count: int) -> bytes:
    """``write -s``: the file's bytes, repeated to fill *count* bytes."""
    try:
        with open(path, "rb") as source:
            content = source.read(count)
    except OSError as err:
        session.rep.err(f"{path}: {os.strerror(err.errno or errno.EIO)}\n")
        raise CommandFailed from err
    if not content:
        session.rep.err(f"{path}: file is empty\n")
        raise CommandFailed
    return (content * (count // len(content) + 1))[:count]


def writev_f(session: Session, argv: list[str]) -> None:
    """``writev [-Cfq] [-P pattern] off len [len..]``: one write from several buffers."""
    opts, operands = parse_options(session, WRITEV, argv, "CfqP:")
    pattern = pattern_option(session, opts, DEFAULT_WRITE_PATTERN)
    offset, count = vector_request(session, WRITEV, operands)
    write_and_report(session, opts, "writev", offset, count, bytes([pattern]) * count)


def aio_write_f(session: Session, argv: list[str]) -> None:
    """``aio_write [-Cfiquz] [-P pattern] off len [len..]``: succeeds once submitted."""
    opts, operands = parse_options(session, AIO_WRITE, argv, "CfiqP:uz")
    if "-i" in opts:
        session.rep.out("injecting invalid write request\n")
        return
    if "-u" in opts and "-z" not in opts:
        session.rep.out("-u requires -z to be specified\n")
        raise CommandFailed
    pattern = pattern_option(session, opts, DEFAULT_WRITE_PATTERN)  # -z wins
    if "-z" in opts:
        if len(operands) < 2:
            session.rep.out(AIO_WRITE.usage())
            raise CommandFailed
        offset, count = number(session, operands[0]), number(session, operands[1])
        data = None
    else:
        offset, count = vector_request(session, AIO_WRITE, operands)
        data = bytes([pattern]) * count
    try:
        write_and_report(session, opts, "aio_write", offset, count, data)
    except CommandFailed:
        pass  # as aio_read


def aio_flush_f(session: Session, argv: list[str]) -> None:
    """``aio_flush``: every request has completed already (see the module docstring)."""


def discard_f(session: Session, argv: list[str]) -> None:
    """``discard [-Cq] off len``; with ``-d ignore`` the request succeeds and changes nothing."""
    opts, operands = parse_options(session, DISCARD, argv, "Cq")
    if len(operands) != 2:
        session.rep.out(DISCARD.usage())
        raise CommandFailed
    offset, count = offset_and_length(session, *operands)
    image = session.current
    # without discard, still a range check, as the block layer does
    request = image.discard if session.settings.discard else image.map
    elapsed = run_request(session, "discard", request, offset, count)
    report(session, opts, "discard", offset, count, elapsed)


def flush_f(session: Session, argv: list[str]) -> None:
    """``flush``: make completed writes durable; qemu-io prints nothing, even on failure."""
    try:
        session.current.flush()
    except BlockFormatError as err:
        raise CommandFailed from err


READ = CommandInfo(
    "read",
    read_f,
    2,
    -1,
    "[-abCqv] [-P pattern [-s off] [-l len]] off len",
    "reads a number of bytes at a specified offset",
    alias="r",
)
READV = CommandInfo(
    "readv",
    readv_f,
    2,
    -1,
    "[-Cqv] [-P pattern] off len [len..]",
    "reads a number of bytes at a specified offset",
)
AIO_READ = CommandInfo(
    "aio_read",
    aio_read_f,
    1,
    -1,
    "[-Ciqv] [-P pattern] off len [len..]",
    "asynchronously reads a number of bytes",
)
WRITE = CommandInfo(
    "write",
    write_f,
    2,
    -1,
    "[-bcCfnquz] [-P pattern | -s source_file] off len",
    "writes a number of bytes at a specified offset",
    writes=True,
    alias="w",
)
WRITEV = CommandInfo(
    "writev",
    writev_f,
    2,
    -1,
    "[-Cfq] [-P pattern] off len [len..]",
    "writes a number of bytes at a specified offset",
    writes=True,
)
AIO_WRITE = CommandInfo(
    "aio_write",
    aio_write_f,
    1,
    -1,
    "[-Cfiquz] [-P pattern] off len [len..]",
    "asynchronously writes a number of bytes",
    writes=True,
)
AIO_FLUSH = CommandInfo("aio_flush", aio_flush_f, 0, 0, None, "completes all outstanding aio requests")
DISCARD = CommandInfo(
    "discard",
    discard_f,
    2,
    -1,
    "[-Cq] off len",
    "discards a number of bytes at a specified offset",
    writes=True,
    alias="d",
)
FLUSH = CommandInfo("flush", flush_f, 0, 0, None, "flush all in-core file state to disk", alias="f")

COMMANDS = (READ, READV, AIO_READ, WRITE, WRITEV, AIO_WRITE, AIO_FLUSH, DISCARD, FLUSH)
