"""``blockfmt-img``: a drop-in for qemu-img 7.2 over the :mod:`blockfmt` API.

This module reads the global options (``-h``, ``-V``, ``-T``), picks the subcommand and turns its
errors into qemu-img's output. Each subcommand lives in an ``img_*`` module listed in
:data:`COMMANDS` and is imported only when run, so a process pays only for what it uses.
Adding a subcommand is one module and one line here (and its line in :mod:`.img_help`).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from ..errors import BlockFormatError
from .args import gnu_getopt
from .img_common import Failure, ObjectHelp, Reported, ShowHelp
from .report import EXIT_FAILURE, EXIT_OK, Reporter, UsageError, run_console

if TYPE_CHECKING:
    import signal

    from ..host import Host

__all__ = ["COMMANDS", "main", "run"]

PROG = "blockfmt-img"

#: subcommand -> ``module:function`` under :mod:`blockfmt.cli`
COMMANDS: dict[str, str] = {
    "amend": "img_resize:cmd_amend",
    "bench": "img_bench:cmd_bench",
    "bitmap": "img_refusals:cmd_bitmap",
    "check": "img_inspect:cmd_check",
    "commit": "chain_commands:cmd_commit",
    "compare": "img_compare:cmd_compare",
    "convert": "img_convert:cmd_convert",
    "create": "img_create:cmd_create",
    "dd": "img_dd:cmd_dd",
    "info": "img_inspect:cmd_info",
    "map": "img_inspect:cmd_map",
    "measure": "img_measure:cmd_measure",
    "rebase": "chain_commands:cmd_rebase",
    "resize": "img_resize:cmd_resize",
    "snapshot": "img_refusals:cmd_snapshot",
}


def _load(target: str) -> object:
    module_name, _, function = target.partition(":")
    module = importlib.import_module(f"{__package__}.{module_name}")
    return getattr(module, function)


def _global_options(args: list[str], rep: Reporter) -> list[str] | None:
    """Handle ``-h``, ``-V`` and ``-T`` before the subcommand; None when the run is complete."""
    opts, rest = gnu_getopt(args, "+hVT:", ["help", "version", "trace=", "list-plugins"])
    for opt, value in opts:
        if opt in ("-h", "--help"):
            raise ShowHelp
        if opt in ("-V", "--version"):
            from .img_help import version_text  # importlib.metadata costs ~40 ms of every start

            rep.out(version_text(rep.prog))
            return None
        if opt == "--list-plugins":  # blockfmt's own: which format plugins loaded, and which did not
            return [opt]
        _trace_option(rep, value)
    return rest


def _trace_option(rep: Reporter, value: str) -> None:
    """``-T``: blockfmt has no trace events, so it says so the way QEMU does for unknown ones."""
    from ..options import parse_option_list

    for key, item in parse_option_list(value):
        if key == "events":
            try:
                with open(item):
                    pass
            except OSError as err:
                rep.err(f"{rep.prog}:{item}: {err.strerror}\n")  # QEMU's file location, no space
                raise Failure() from None
        elif key in ("enable", "on") or "=" not in value.split(",")[0]:
            pattern = item if key == "enable" else key
            if pattern != "help" and not any(c in pattern for c in "*?"):
                rep.error(f"warning: trace event '{pattern}' does not exist")


def main(argv: Sequence[str] | None = None, *, prog: str = PROG, host: Host | None = None) -> int:
    """Run one ``blockfmt-img`` command line (without the program name); return the exit code.

    Library errors become qemu-img's messages; any other exception propagates, because it is a bug.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    rep = Reporter(prog)
    try:
        try:
            rest = _global_options(args, rep)
            if rest is None:
                return EXIT_OK
            if not rest:
                raise UsageError("Not enough arguments")
            name = rest[0]
            if name == "--list-plugins":
                from ..host import default_host
                from .plugins import list_plugins

                return list_plugins(rep, host or default_host())
            target = COMMANDS.get(name)
            if target is None:
                raise UsageError(f"Command not found: {name}")
            if host is None:
                from .plugins import cli_host

                host = cli_host(rep)
            command = _load(target)
            return command(rest[1:], rep, host)  # type: ignore[operator]
        except ShowHelp:
            from ..host import default_host
            from .img_help import help_text

            rep.out(help_text(rep.prog, list((host or default_host()).formats)))
            return EXIT_OK
    except ObjectHelp as request:
        rep.out(request.text)
        return EXIT_OK
    except Reported as err:
        rep.exception(err, err.context)
        return err.code
    except Failure as err:
        for line in err.lines:
            rep.error(line)
        return err.code
    except BlockFormatError as err:
        rep.exception(err)
        return EXIT_FAILURE


def run() -> NoReturn:
    """Console entry point: exit with :func:`main`'s code.

    Ctrl-C and a closed output pipe end the process by that signal, as they end qemu-img (which
    installs no handlers): the shell sees the same status, and no traceback is printed. Whatever
    was being written is cleaned up first, as the exception unwinds (a convert's or dd's partial
    target is removed).
    """
    try:
        run_console(main)
    except KeyboardInterrupt:
        _die_by("SIGINT")
    except BrokenPipeError:
        _die_by("SIGPIPE")


def _die_by(name: str) -> NoReturn:
    import signal  # only a dying process needs it: building its enums is ~1 ms of every start

    signum: signal.Signals = getattr(signal, name)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)  # not reached: the default action ends the process
