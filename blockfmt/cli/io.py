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
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ..errors import BlockFormatError, BlockIOError, InvalidOptionError, ReadOnlyError
from ..host import Host
from ..image import Image
from . import render
from .args import NumberError, cvtnum, glibc_getopt_message, parse_pattern
from .opening import open_from_cli
from .plugins import cli_host
from .report import EXIT_FAILURE, EXIT_OK, Reporter, run_console

__all__ = ["main", "run"]

PROG = "blockfmt-io"
#: BDRV_REQUEST_MAX_BYTES: INT_MAX rounded down to a 512-byte sector
REQUEST_MAX_BYTES = (2**31 - 1) // 512 * 512
#: qemu-io fills write buffers with this byte unless ``-P`` says otherwise
DEFAULT_WRITE_PATTERN = 0xCD

USAGE = """\
Usage: {prog} [OPTIONS]... [-c STRING]... [file]
QEMU Disk exerciser

  --object OBJECTDEF   define an object such as 'secret' for
                       passwords and/or encryption keys
  --image-opts         treat file as option string
  -c, --cmd STRING     execute command with its arguments
                       from the given string
  -f, --format FMT     specifies the block driver to use
  -r, --read-only      export read-only
  -s, --snapshot       use snapshot file
  -n, --nocache        disable host cache, short for -t none
  -C, --copy-on-read   enable copy-on-read
  -m, --misalign       misalign allocations for O_DIRECT
  -k, --native-aio     use kernel AIO implementation
                       (Linux only, prefer use of -i)
  -i, --aio=MODE       use AIO mode (threads, native or io_uring)
  -t, --cache=MODE     use the given cache mode for the image
  -d, --discard=MODE   use the given discard mode for the image
  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]
                       specify tracing options
                       see qemu-img(1) man page for full description
  -U, --force-share    force shared permissions
  -h, --help           display this help and exit
  -V, --version        output version information and exit

See '{prog} -c help' for information on available commands.

See <https://qemu.org/contribute/report-a-bug> for how to report bugs.
More information on the QEMU project at <https://qemu.org>.
"""
#: the QEMU release whose qemu-io this one imitates
QEMU_VERSION = "7.2.22"
#: bdrv_parse_cache_mode: mode -> (O_DIRECT, writethrough)
CACHE_MODES = {
    "none": (True, False),
    "off": (True, False),
    "directsync": (True, True),
    "writeback": (False, False),
    "unsafe": (False, False),
    "writethrough": (False, True),
}
AIO_MODES = ("threads", "native", "io_uring")
#: bdrv_parse_discard_flags: mode -> whether discard requests reach the image
DISCARD_MODES = {"off": False, "ignore": False, "on": True, "unmap": True}
#: QOM types ``--object`` may create that an image open can use (they need no action here)
OBJECT_TYPES = ("secret", "secret_keyring", "throttle-group")
SHORT_OPTIONS = "hVc:d:f:rsnCmkt:i:T:U"
LONG_OPTIONS = [
    "help",
    "version",
    "cmd=",
    "discard=",
    "format=",
    "read-only",
    "snapshot",
    "nocache",
    "copy-on-read",
    "misalign",
    "native-aio",
    "cache=",
    "aio=",
    "trace=",
    "force-share",
    "object=",
    "image-opts",
]


class _CommandFailed(Exception):
    """A command ended with an error that it already printed (qemu-io's negative return)."""


@dataclass
class OpenSettings:
    """How qemu-io opens an image (its command line, or ``open``'s own flags)."""

    read_only: bool = False
    force_share: bool = False
    snapshot: bool = False
    image_opts: bool = False
    #: -t writethrough / directsync: every write is flushed before it completes
    writethrough: bool = False
    #: -t none / directsync (O_DIRECT), needed by aio=native
    direct: bool = False
    native_aio: bool = False
    #: -d: whether discard requests (and unmapping zero writes) reach the image
    discard: bool = True
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Session:
    """The state qemu-io keeps between commands: the open image and how it was opened."""

    rep: Reporter
    host: Host
    format: str | None = None
    image: Image | None = None
    settings: OpenSettings = field(default_factory=OpenSettings)

    def open(self, filename: str | None, settings: OpenSettings) -> None:
        """qemu-io's ``openfile``: errors become ``can't open device <file>: <message>``."""
        if self.image is not None:
            self.rep.error("file open already, try 'help close'")
            raise _CommandFailed
        named = filename is not None and not settings.image_opts
        context = f"can't open device {filename}: " if named else "can't open: "
        try:
            if settings.native_aio and not settings.direct:
                raise InvalidOptionError(
                    "aio=native was specified, but it requires cache.direct=on, which was not specified."
                )
            self.image = open_from_cli(
                self.rep,
                self.host,
                filename,
                self.format,
                read_only=settings.read_only,
                force_share=settings.force_share,
                image_opts=settings.image_opts,
                options=settings.options,
                snapshot=settings.snapshot,
            )
        except BlockFormatError as err:
            self.rep.exception(err, context)
            raise _CommandFailed from err
        self.settings = settings

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


def _getopt_pairs(
    session: Session, info: CommandInfo, argv: list[str], shortopts: str
) -> tuple[list[tuple[str, str]], list[str]]:
    """A command's options in order (repeatable ones such as ``open -o``), and its operands."""
    try:
        return getopt.gnu_getopt(argv[1:], shortopts)
    except getopt.GetoptError as err:
        session.rep.err(f"{argv[0]}: {glibc_getopt_message(err)}\n")
        session.rep.out(info.usage())
        raise _CommandFailed from None


def _getopt(
    session: Session, info: CommandInfo, argv: list[str], shortopts: str
) -> tuple[dict[str, str], list[str]]:
    """A command's options (the last of each wins) and its operands."""
    pairs, operands = _getopt_pairs(session, info, argv, shortopts)
    return dict(pairs), operands


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
    """``open [-rsCnkU] [-t cache] [-d discard] [-o options] [path]``: probes the format (the
    command line's ``-f`` does not apply); without a path the ``-o`` options name the image."""
    pairs, operands = _getopt_pairs(session, OPEN, argv, "snCro:kt:d:U")
    settings = OpenSettings()
    for opt, value in pairs:
        if opt == "-o":
            from .blockdev_opts import parse_qemu_opts  # only open -o needs the option syntax

            tree = parse_qemu_opts(value, lambda text: session.rep.error(f"warning: {text}"))
            settings.options = {**settings.options, **tree}
        elif not _apply_open_option(session.rep, settings, opt, value):
            raise _CommandFailed
    if len(operands) > 1:
        session.rep.out(OPEN.usage())
        raise _CommandFailed
    session.format = None
    session.open(operands[0] if operands else None, settings)


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
        opts, operands = getopt.gnu_getopt(args, SHORT_OPTIONS, LONG_OPTIONS)
    except getopt.GetoptError as err:
        rep.error(glibc_getopt_message(err))
        rep.out(USAGE.format(prog=prog))
        return EXIT_FAILURE
    session = Session(rep, host or cli_host(rep))
    commands: list[str] = []
    settings = OpenSettings()
    for opt, value in opts:
        if opt in ("-h", "--help"):
            rep.out(USAGE.format(prog=prog))
            return EXIT_OK
        if opt in ("-V", "--version"):
            rep.out(f"{prog} version {QEMU_VERSION} (blockfmt)\n")
            return EXIT_OK
        if opt in ("-c", "--cmd"):
            commands.append(value)
        elif opt in ("-f", "--format"):
            session.format = value
        elif not _apply_open_option(rep, settings, opt, value):
            return EXIT_FAILURE
    if settings.image_opts and session.format is not None:
        rep.error("--image-opts and -f are mutually exclusive")
        return EXIT_FAILURE
    if len(operands) > 1:
        rep.out(USAGE.format(prog=prog))
        return EXIT_FAILURE
    try:
        if operands:
            try:
                session.open(operands[0], settings)
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


def _apply_open_option(rep: Reporter, settings: OpenSettings, opt: str, value: str) -> bool:
    """One of qemu-io's open options into *settings*; False (after the error) for a bad value."""
    if opt in ("-r", "--read-only"):
        settings.read_only = True
    elif opt in ("-U", "--force-share"):
        settings.force_share = True
    elif opt in ("-s", "--snapshot"):
        settings.snapshot = True
    elif opt in ("-n", "--nocache"):
        settings.direct, settings.writethrough = CACHE_MODES["none"]
    elif opt in ("-k", "--native-aio"):
        settings.native_aio = True
    elif opt in ("-t", "--cache"):
        if value not in CACHE_MODES:
            rep.error(f"Invalid cache option: {value}")
            return False
        settings.direct, settings.writethrough = CACHE_MODES[value]
    elif opt in ("-i", "--aio"):
        if value not in AIO_MODES:
            rep.error(f"Invalid aio option: {value}")
            return False
        settings.native_aio = value == "native"
    elif opt in ("-d", "--discard"):
        if value not in DISCARD_MODES:
            rep.error(f"Invalid discard option: {value}")
            return False
        settings.discard = DISCARD_MODES[value]
    elif opt == "--image-opts":
        settings.image_opts = True
    elif opt == "--object":
        return _check_object(rep, value)
    # -C (copy-on-read: no backing file to copy from), -m (buffer alignment) and -T (tracing)
    # change nothing that can be observed here
    return True


def _check_object(rep: Reporter, text: str) -> bool:
    """``--object``: accept the QOM types an image may refer to; QEMU's refusal for the others."""
    from .blockdev_opts import parse_qemu_opts  # --object is rare

    qom_type, _, rest = text.partition(",")
    props = parse_qemu_opts(rest)
    if qom_type not in OBJECT_TYPES:
        rep.error(f"Parameter 'qom-type' does not accept value '{qom_type}'")
        return False
    if "id" not in props:
        rep.error("Parameter 'id' is missing")
        return False
    return True


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
