"""``blockfmt-io``: qemu-io's command loop (``read``, ``write``, ``discard``, ``flush``, ``open``, ``close``).

``blockfmt-io [-f fmt] [-r] [-U] [-c cmd]... [file]`` runs every ``-c`` command in order (or the
lines of stdin when there is none), prints what qemu-io 7.2 prints, and exits 1 when any command
failed, as qemu-io's ``command_loop`` does. Commands are split on spaces without quoting, like
qemu-io's ``breakline``.
"""

from __future__ import annotations

import errno
import getopt
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NoReturn

from ..errors import BlockFormatError, BlockIOError, ReadOnlyError
from ..host import Host, default_host
from ..image import Image
from . import render
from .args import NumberError, cvtnum, glibc_getopt_message, parse_pattern
from .opening import open_from_cli
from .report import EXIT_FAILURE, EXIT_OK, Reporter, run_console

__all__ = ["main", "run"]

PROG = "blockfmt-io"
#: BDRV_REQUEST_MAX_BYTES: INT_MAX rounded down to a 512-byte sector
REQUEST_MAX_BYTES = (2**31 - 1) // 512 * 512
#: qemu-io fills write buffers with this byte unless ``-P`` says otherwise
DEFAULT_WRITE_PATTERN = 0xCD

USAGE = """\
Usage: {prog} [OPTIONS]... [-c STRING]... [file]
blockfmt disk exerciser (qemu-io compatible)

  -c, --cmd STRING     execute command with its arguments
                       from the given string
  -f, --format FMT     specifies the block driver to use
  -r, --read-only      export read-only
  -U, --force-share    force shared permissions
  -h, --help           display this help and exit

See '{prog} -c help' for information on available commands.
"""


class _CommandFailed(Exception):
    """A command ended with an error that it already printed (qemu-io's negative return)."""


@dataclass
class Session:
    """The state qemu-io keeps between commands: the open image and how it was opened."""

    rep: Reporter
    host: Host
    format: str | None = None
    image: Image | None = None

    def open(self, filename: str, *, read_only: bool, force_share: bool) -> None:
        """qemu-io's ``openfile``: errors become ``can't open device <file>: <message>``."""
        if self.image is not None:
            self.rep.error("file open already, try 'help close'")
            raise _CommandFailed
        try:
            self.image = open_from_cli(
                self.rep, self.host, filename, self.format, read_only=read_only, force_share=force_share
            )
        except BlockFormatError as err:
            self.rep.exception(err, f"can't open device {filename}: ")
            raise _CommandFailed from err

    def close(self) -> None:
        if self.image is not None:
            image, self.image = self.image, None
            image.close()


@dataclass(frozen=True)
class CommandInfo:
    """One qemu-io command: its argument bounds (``argmax`` -1 means unbounded) and help line."""

    name: str
    func: Callable[[Session, list[str]], None]
    argmin: int
    argmax: int
    args: str
    oneline: str
    needs_file: bool = True
    writes: bool = False

    def usage(self) -> str:
        return (
            f"{self.name} {self.args} -- {self.oneline}\n"
            if self.args
            else f"{self.name} -- {self.oneline}\n"
        )


# -------------------------------------------------------------------------
# argument helpers
# -------------------------------------------------------------------------


def _getopt(
    session: Session, info: CommandInfo, argv: list[str], shortopts: str
) -> tuple[dict[str, str], list[str]]:
    try:
        opts, operands = getopt.gnu_getopt(argv[1:], shortopts)
    except getopt.GetoptError as err:
        session.rep.err(f"{argv[0]}: {glibc_getopt_message(err)}\n")
        session.rep.out(info.usage())
        raise _CommandFailed from None
    return dict(opts), operands


def _number(session: Session, text: str) -> int:
    """qemu-io's ``cvtnum`` + ``print_cvtnum_err``."""
    value = cvtnum(text)
    if value is NumberError.INVALID:
        session.rep.out(f"Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- {text}\n")
        raise _CommandFailed
    if value is NumberError.RANGE:
        session.rep.out(f"Parsing error: argument too large -- {text}\n")
        raise _CommandFailed
    return value


def _offset_and_length(session: Session, offset_text: str, length_text: str) -> tuple[int, int]:
    offset = _number(session, offset_text)
    length = _number(session, length_text)
    if length > REQUEST_MAX_BYTES:
        session.rep.out(f"length cannot exceed {REQUEST_MAX_BYTES}, given {length_text}\n")
        raise _CommandFailed
    return offset, length


def _pattern(session: Session, text: str) -> int:
    value = parse_pattern(text)
    if value is None:
        session.rep.out(f"{text} is not a valid pattern byte\n")
        raise _CommandFailed
    return value


def _io_failed(session: Session, op: str, err: BlockFormatError) -> None:
    """``<op> failed: <strerror>``: qemu-io knows only the errno, so that is all it prints."""
    code = err.errno if isinstance(err, BlockIOError) and err.errno else errno.EIO
    if isinstance(err, ReadOnlyError):
        code = errno.EPERM
    session.rep.out(f"{op} failed: {os.strerror(code)}\n")
    raise _CommandFailed from err


def _image(session: Session) -> Image:
    assert session.image is not None  # guaranteed by CommandInfo.needs_file
    return session.image


def _timed_request(session: Session, what: str, request: Callable[[], object]) -> int:
    """Run one I/O request as qemu-io times it; an error fails the command with qemu-io's text.

    :returns: the elapsed time in nanoseconds, for the report line.
    """
    start = time.monotonic_ns()
    try:
        request()
    except BlockFormatError as err:
        _io_failed(session, what, err)
    return time.monotonic_ns() - start


# -------------------------------------------------------------------------
# commands
# -------------------------------------------------------------------------


def read_f(session: Session, argv: list[str]) -> None:
    """``read [-pqv] [-P pattern [-s off] [-l len]] off len``; a pattern mismatch fails the command."""
    opts, operands = _getopt(session, READ, argv, "Cl:pP:qs:v")
    pattern_count = _number(session, opts["-l"]) if "-l" in opts else None
    pattern_offset = _number(session, opts["-s"]) if "-s" in opts else 0
    pattern = _pattern(session, opts["-P"]) if "-P" in opts else None
    if len(operands) != 2:
        session.rep.out(READ.usage())
        raise _CommandFailed
    offset, count = _offset_and_length(session, *operands)
    if pattern is None and ("-l" in opts or "-s" in opts):
        session.rep.out(READ.usage())
        raise _CommandFailed
    if pattern_count is None:
        pattern_count = count - pattern_offset
    if pattern_count < 0 or pattern_count + pattern_offset > count:
        session.rep.out("pattern verification range exceeds end of read data\n")
        raise _CommandFailed
    buf = bytearray(count)
    image = _image(session)
    elapsed = _timed_request(session, "read", lambda: image.readinto_at(offset, buf))
    failed = False
    if pattern is not None:
        expected = bytes([pattern]) * pattern_count
        if buf[pattern_offset : pattern_offset + pattern_count] != expected:
            session.rep.out(
                f"Pattern verification failed at offset {offset + pattern_offset}, {pattern_count} bytes\n"
            )
            failed = True
    if "-q" not in opts:
        if "-v" in opts:
            session.rep.out(render.dump_buffer(bytes(buf), offset))
        session.rep.out(render.io_report("read", offset, count, count, 1, elapsed))
    if failed:
        raise _CommandFailed


def write_f(session: Session, argv: list[str]) -> None:
    """``write [-pquz] [-P pattern] off len``: ``-z`` writes zeroes, ``-u`` lets them unmap."""
    opts, operands = _getopt(session, WRITE, argv, "CfnpP:quz")
    pattern = _pattern(session, opts["-P"]) if "-P" in opts else DEFAULT_WRITE_PATTERN
    if len(operands) != 2:
        session.rep.out(WRITE.usage())
        raise _CommandFailed
    if "-u" in opts and "-z" not in opts:
        session.rep.out("-u requires -z to be specified\n")
        raise _CommandFailed
    if "-z" in opts and "-P" in opts:
        session.rep.out("Only one of -z, -P, and -s can be specified at the same time\n")
        raise _CommandFailed
    offset, count = _offset_and_length(session, *operands)
    image = _image(session)

    def request() -> None:
        if "-z" in opts:
            image.write_zeroes(offset, count, unmap="-u" in opts)
        else:
            image.write_at(offset, bytes([pattern]) * count)
        if "-f" in opts:
            image.flush()

    elapsed = _timed_request(session, "write", request)
    if "-q" not in opts:
        session.rep.out(render.io_report("wrote", offset, count, count, 1, elapsed))


def discard_f(session: Session, argv: list[str]) -> None:
    """``discard [-q] off len``."""
    opts, operands = _getopt(session, DISCARD, argv, "Cq")
    if len(operands) != 2:
        session.rep.out(DISCARD.usage())
        raise _CommandFailed
    offset, count = _offset_and_length(session, *operands)
    image = _image(session)
    elapsed = _timed_request(session, "discard", lambda: image.discard(offset, count))
    if "-q" not in opts:
        session.rep.out(render.io_report("discard", offset, count, count, 1, elapsed))


def flush_f(session: Session, argv: list[str]) -> None:
    """``flush``: make completed writes durable; qemu-io prints nothing, even on failure."""
    try:
        _image(session).flush()
    except BlockFormatError as err:
        raise _CommandFailed from err


def open_f(session: Session, argv: list[str]) -> None:
    """``open [-rU] file``: probes the format (``-f`` of the command line does not apply)."""
    opts, operands = _getopt(session, OPEN, argv, "rU")
    if len(operands) != 1:
        session.rep.out(OPEN.usage())
        raise _CommandFailed
    session.format = None
    session.open(operands[0], read_only="-r" in opts, force_share="-U" in opts)


def close_f(session: Session, argv: list[str]) -> None:
    """``close``."""
    session.close()


READ = CommandInfo(
    "read",
    read_f,
    2,
    -1,
    "[-abCqv] [-P pattern [-s off] [-l len]] off len",
    "reads a number of bytes at a specified offset",
)
WRITE = CommandInfo(
    "write",
    write_f,
    2,
    -1,
    "[-bcCfnquz] [-P pattern | -s source_file] off len",
    "writes a number of bytes at a specified offset",
    writes=True,
)
DISCARD = CommandInfo(
    "discard",
    discard_f,
    2,
    -1,
    "[-Cq] off len",
    "discards a number of bytes at a specified offset",
    writes=True,
)
FLUSH = CommandInfo("flush", flush_f, 0, 0, "", "flush all in-core file state to disk")
OPEN = CommandInfo(
    "open",
    open_f,
    1,
    -1,
    "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
    "open the file specified by path",
    needs_file=False,
)
CLOSE = CommandInfo("close", close_f, 0, 0, "", "close the current open file")

#: command names and qemu-io's one-letter aliases
COMMANDS: dict[str, CommandInfo] = {
    **{c.name: c for c in (READ, WRITE, DISCARD, FLUSH, OPEN, CLOSE)},
    "r": READ,
    "w": WRITE,
    "d": DISCARD,
    "f": FLUSH,
    "o": OPEN,
    "c": CLOSE,
}
QUIT_COMMANDS = ("quit", "q")


def run_command(session: Session, line: str) -> bool:
    """Run one command line; return False when it failed (its error is already printed)."""
    argv = line.split()
    if not argv:
        return True
    info = COMMANDS.get(argv[0])
    if info is None:
        session.rep.err(f'command "{argv[0]}" not found\n')
        return False
    if info.needs_file and session.image is None:
        session.rep.err("no file open, try 'help open'\n")
        return False
    given = len(argv) - 1
    if given < info.argmin or (info.argmax != -1 and given > info.argmax):
        if info.argmax == -1:
            expected = f"at least {info.argmin}"
        elif info.argmin == info.argmax:
            expected = str(info.argmin)
        else:
            expected = f"between {info.argmin} and {info.argmax}"
        session.rep.err(f"bad argument count {given} to {argv[0]}, expected {expected} arguments\n")
        return False
    if info.writes and session.image is not None and session.image.read_only:
        session.rep.error("Block node is read-only")
        return False
    try:
        info.func(session, argv)
    except _CommandFailed:
        return False
    return True


def main(argv: Sequence[str] | None = None, *, prog: str = PROG, host: Host | None = None) -> int:
    """Run a ``blockfmt-io`` command line (without the program name); return the exit code."""
    rep = Reporter(prog)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, operands = getopt.gnu_getopt(
            args, "c:f:hrU", ["cmd=", "format=", "help", "read-only", "force-share"]
        )
    except getopt.GetoptError as err:
        rep.error(glibc_getopt_message(err))
        rep.out(USAGE.format(prog=prog))
        return EXIT_FAILURE
    session = Session(rep, host or default_host())
    commands: list[str] = []
    read_only = force_share = False
    for opt, value in opts:
        if opt in ("-h", "--help"):
            rep.out(USAGE.format(prog=prog))
            return EXIT_OK
        if opt in ("-c", "--cmd"):
            commands.append(value)
        elif opt in ("-f", "--format"):
            session.format = value
        elif opt in ("-r", "--read-only"):
            read_only = True
        elif opt in ("-U", "--force-share"):
            force_share = True
    if len(operands) > 1:
        rep.out(USAGE.format(prog=prog))
        return EXIT_FAILURE
    try:
        if operands:
            try:
                session.open(operands[0], read_only=read_only, force_share=force_share)
            except _CommandFailed:
                return EXIT_FAILURE
        failed = False
        for line in commands or _stdin_lines(rep):
            if line.split()[:1] in ([q] for q in QUIT_COMMANDS):
                break
            failed |= not run_command(session, line)
        return EXIT_FAILURE if failed else EXIT_OK
    finally:
        session.close()


def _stdin_lines(rep: Reporter) -> Iterator[str]:
    """Commands from stdin, each after qemu-io's ``<prog>> `` prompt (one more at end of input)."""
    while True:
        rep.out(f"{rep.prog}> ")
        line = sys.stdin.readline() if sys.stdin is not None else ""
        if not line:
            return
        yield line


def run() -> NoReturn:
    """Console entry point: exit with :func:`main`'s code."""
    run_console(main)
