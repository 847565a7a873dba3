"""The one place that prints errors: program-name prefix, context, hints and exit codes.

QEMU layers its error text: a driver sets the bare message where the fact is known
(``error_setg``), the front end prepends context (``error_prepend``: ``Could not open '<file>': ``)
and ``error_report`` adds the program name. blockfmt follows the same layering: library errors
carry only the bare message and an optional hint; the CLIs add context and the prefix here.

The prefix is the program name as invoked (``blockfmt-img``), so the iotests filter that maps
``blockfmt-img`` to ``qemu-img`` makes both tools' outputs compare equal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn, TextIO

from ..errors import BlockFormatError

__all__ = [
    "EXIT_CHECK_CORRUPTIONS",
    "EXIT_CHECK_LEAKS",
    "EXIT_CHECK_UNSUPPORTED",
    "EXIT_FAILURE",
    "EXIT_OK",
    "Reporter",
    "UsageError",
]

EXIT_OK = 0
#: every failure of qemu-img and qemu-io, and ``check``'s "not completed because of internal errors"
EXIT_FAILURE = 1
#: ``qemu-img check`` found corruptions
EXIT_CHECK_CORRUPTIONS = 2
#: ``qemu-img check`` found only leaks
EXIT_CHECK_LEAKS = 3
#: ``qemu-img check`` on a format without checks
EXIT_CHECK_UNSUPPORTED = 63


class UsageError(BlockFormatError):
    """A command line qemu-img rejects with ``error_exit`` (message, then a ``--help`` pointer)."""


class Reporter:
    """Writes a CLI's output and errors, the way QEMU's ``error_report`` formats them.

    :param prog: the program name printed before every error line.
    :param stdout: where results go; ``sys.stdout`` at the time of writing when None.
    :param stderr: where errors go; ``sys.stderr`` at the time of writing when None.
    """

    def __init__(self, prog: str, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.prog = prog
        self._stdout = stdout
        self._stderr = stderr

    @property
    def stdout(self) -> TextIO:
        return self._stdout or sys.stdout

    @property
    def stderr(self) -> TextIO:
        return self._stderr or sys.stderr

    def out(self, text: str) -> None:
        """Print *text* (already newline-terminated) on stdout."""
        self.stdout.write(text)
        self.stdout.flush()

    def err(self, text: str) -> None:
        """Print *text* as is on stderr (driver messages, warnings: no prefix)."""
        self.stdout.flush()
        self.stderr.write(text)
        self.stderr.flush()

    def error(self, message: str) -> None:
        """``error_report``: ``<prog>: <message>``; continuation lines stay unprefixed."""
        self.err(f"{self.prog}: {message}\n")

    def exception(self, err: BlockFormatError, context: str = "") -> None:
        """Report a library error with optional *context* (``"Could not open 'x': "``) and its hint."""
        if isinstance(err, UsageError):
            self.usage(err.message)
            return
        self.error(f"{context}{err.message}")
        if err.hint:
            self.err(err.hint if err.hint.endswith("\n") else err.hint + "\n")

    def usage(self, message: str) -> None:
        """``error_exit``: the message and a pointer to ``--help``."""
        self.error(message)
        self.err(f"Try '{self.prog} --help' for more information\n")


def open_context(filename: str) -> str:
    """The context qemu-img puts before any error while opening *filename*."""
    return f"Could not open '{filename}': "


def run_console(main: Callable[..., int]) -> NoReturn:
    """Run a CLI's ``main(prog=...)`` as a console script: exit with its code, and report a library
    error that escaped it as a one-line message; any other exception stays a traceback (a bug)."""
    prog = prog_name()
    try:
        code = main(prog=prog)
    except BlockFormatError as err:
        Reporter(prog).exception(err)
        code = EXIT_FAILURE
    raise SystemExit(code)


def prog_name(argv0: str | None = None) -> str:
    """The program name as invoked (``blockfmt-img``), for error prefixes."""
    return os.path.basename(argv0 if argv0 is not None else sys.argv[0]) or "blockfmt"
