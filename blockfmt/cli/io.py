"""``blockfmt-io``: qemu-io 7.2's command line and command loop.

``blockfmt-io [OPTIONS]... [-c STRING]... [file]`` runs every ``-c`` command in order (or the
lines of stdin after a ``<prog>> `` prompt when there is none), prints what qemu-io 7.2 prints,
and exits 1 when any command failed, as qemu-io's ``command_loop`` does. Commands are split on
spaces without quoting, like qemu-io's ``breakline``; they live in :mod:`blockfmt.cli.qemu_io`.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn

from ..host import Host
from .args import OptionError, getopt_long
from .plugins import cli_host
from .qemu_io.commands import QUIT_COMMANDS, run_command
from .qemu_io.session import CommandFailed, OpenSettings, Session, apply_open_option
from .report import EXIT_FAILURE, EXIT_OK, Reporter, run_console

__all__ = ["main", "run"]

PROG = "blockfmt-io"
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
#: QOM types ``--object`` may create that an image open can use (they need no action here)
OBJECT_TYPES = ("secret", "secret_keyring", "throttle-group")
SHORT_OPTIONS = "hVc:d:f:rsnCmkt:i:T:U"
#: in qemu-io's order, which glibc's "is ambiguous; possibilities:" lists follow
LONG_OPTIONS = (
    "help",
    "version",
    "cmd=",
    "format=",
    "read-only",
    "snapshot",
    "nocache",
    "copy-on-read",
    "misalign",
    "native-aio",
    "discard=",
    "cache=",
    "aio=",
    "trace=",
    "object=",
    "image-opts",
    "force-share",
)


class BufferedReporter(Reporter):
    """qemu-io's stdio: the C library buffers stdout (by line on a terminal, in 4 KiB blocks into a
    pipe or file) while errors go straight to stderr, so in a ``2>&1`` pipe errors come before the
    results printed around them, as the iotests' reference outputs record. Python's own buffering
    cannot be relied on for this (``PYTHONUNBUFFERED``), hence the buffer here."""

    BLOCK = 4096

    def __init__(self, prog: str) -> None:
        super().__init__(prog)
        #: text not written yet, and its length (a list: appending to one string copies it)
        self._pending: list[str] = []
        self._pending_chars = 0
        #: whether stdout is a terminal, asked once (a system call per line would cost more than
        #: formatting it)
        self._tty: bool | None = None

    def out(self, text: str) -> None:
        if self._tty is None:
            self._tty = self.stdout.isatty()
        if self._tty:
            super().out(text)
            return
        self._pending.append(text)
        self._pending_chars += len(text)
        if self._pending_chars >= self.BLOCK:
            pending = "".join(self._pending)
            whole = len(pending) - len(pending) % self.BLOCK
            self._pending = [pending[whole:]]
            self._pending_chars = len(pending) - whole
            self._write(pending[:whole])

    def err(self, text: str) -> None:
        self.stderr.write(text)
        self.stderr.flush()

    def flush(self) -> None:
        """``fflush(stdout)``: at the prompt and at exit (a crash loses what is pending)."""
        if not self._pending_chars:
            return
        self._write("".join(self._pending))
        self._pending = []
        self._pending_chars = 0

    def _write(self, text: str) -> None:
        """Write and flush; a reader that went away (``| head``) is ignored, as qemu-io ignores
        SIGPIPE and failed writes, and later output goes nowhere."""
        try:
            self.stdout.write(text)
            self.stdout.flush()
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stdout.fileno())
            os.close(devnull)


def main(argv: Sequence[str] | None = None, *, prog: str = PROG, host: Host | None = None) -> int:
    """Run a ``blockfmt-io`` command line (without the program name); return the exit code."""
    rep = BufferedReporter(prog)
    try:
        return _run(rep, list(sys.argv[1:] if argv is None else argv), host)
    finally:
        rep.flush()


def _run(rep: BufferedReporter, args: list[str], host: Host | None) -> int:
    prog = rep.prog
    try:
        opts, operands = getopt_long(args, SHORT_OPTIONS, LONG_OPTIONS)
    except OptionError as err:
        rep.error(str(err))
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
        elif not _open_option(rep, settings, opt, value):
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
            except CommandFailed:
                return EXIT_FAILURE
        failed = False
        for line in commands or _stdin_lines(rep):
            argv = line.split()
            if argv and argv[0] in QUIT_COMMANDS:
                break
            if not run_command(session, argv):
                failed = True
        return EXIT_FAILURE if failed else EXIT_OK
    finally:
        session.close()


def _open_option(rep: Reporter, settings: OpenSettings, opt: str, value: str) -> bool:
    if opt == "--object":
        return _check_object(rep, value)
    return apply_open_option(rep, settings, opt, value)


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


def _stdin_lines(rep: BufferedReporter) -> Iterator[str]:
    """Commands from stdin, each after qemu-io's ``<prog>> `` prompt (one more at end of input)."""
    while True:
        rep.out(f"{rep.prog}> ")
        rep.flush()  # qemu-io flushes its prompt, and with it what came before
        line = sys.stdin.readline() if sys.stdin is not None else ""
        if not line:
            return
        yield line


def run() -> NoReturn:
    """Console entry point: exit with :func:`main`'s code.

    SIGINT keeps its default action, as in qemu-io (which installs no handler): Ctrl-C ends the
    process at once with the signal's status, not with a Python traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    run_console(main)
