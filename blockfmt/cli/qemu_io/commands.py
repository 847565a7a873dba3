"""The table of qemu-io commands, ``help``, and running one command line."""

from __future__ import annotations

from . import misc, rw
from .help_text import EXTENDED_HELP
from .session import CommandFailed, CommandInfo, Session

__all__ = ["COMMANDS", "QUIT_COMMANDS", "run_command"]

QUIT_COMMANDS = ("quit", "q")


def help_f(session: Session, argv: list[str]) -> None:
    """``help [command]``: every usage line, or one command's with its extended help."""
    if len(argv) == 1:
        for name in sorted(ALL):
            session.rep.out(ALL[name].usage())
        session.rep.out("\nUse 'help commandname' for extended help.\n")
        return
    info = COMMANDS.get(argv[1])
    if info is None:
        session.rep.out(f"command {argv[1]} not found\n")
        raise CommandFailed
    session.rep.out(info.usage() + EXTENDED_HELP.get(info.name, ""))


def _quit_f(session: Session, argv: list[str]) -> None:
    """``quit``: the command loop stops before running it; listed here for ``help``."""


HELP = CommandInfo(
    "help", help_f, 0, 1, "[command]", "help for one or all commands", needs_file=False, alias="?"
)
QUIT = CommandInfo("quit", _quit_f, 0, 0, None, "exit the program", needs_file=False, alias="q")

#: every command by its name
ALL: dict[str, CommandInfo] = {c.name: c for c in (*rw.COMMANDS, *misc.COMMANDS, HELP, QUIT)}
#: names and one-letter aliases
COMMANDS: dict[str, CommandInfo] = {**ALL, **{c.alias: c for c in ALL.values() if c.alias}}


def run_command(session: Session, argv: list[str]) -> bool:
    """Run one command line, split into words (qemu-io's ``breakline``: on spaces, no quoting);
    return False when it failed (its error is already printed)."""
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
    except CommandFailed:
        return False
    return True
