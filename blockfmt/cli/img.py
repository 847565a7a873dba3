"""``blockfmt-img``: qemu-img's ``create``, ``info``, ``check``, ``convert``, ``map`` and ``compare``.

Each command parses its arguments as qemu-img 7.2 does, calls the :mod:`blockfmt` API and prints
through :mod:`blockfmt.cli.render` (texts) and :mod:`blockfmt.cli.report` (errors, exit codes).
Nothing here knows a format: options, defaults and help texts come from each plugin's
:class:`~blockfmt.FormatSpec`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from ..api import create as create_image
from ..driver import CheckResult, FormatSpec, RepairMode
from ..errors import BlockFormatError, InvalidOptionError, UnsupportedOperationError
from ..host import Host, default_host
from ..image import Image
from ..options import coerce_create_options, parse_option_list
from . import chain_commands, render
from .args import INT64_MAX, NumberError, cvtnum, gnu_getopt
from .opening import open_from_cli
from .plugins import cli_host, list_plugins
from .report import (
    EXIT_CHECK_CORRUPTIONS,
    EXIT_CHECK_LEAKS,
    EXIT_CHECK_UNSUPPORTED,
    EXIT_FAILURE,
    EXIT_OK,
    Reporter,
    UsageError,
    open_context,
    run_console,
)

__all__ = ["main", "run"]

PROG = "blockfmt-img"
DEFAULT_FORMAT = "raw"
#: qemu-img compare reports mismatches at the start of the 512-byte sector holding them
SECTOR_SIZE = 512
#: ``qemu-img compare`` exit codes beyond 0/1
EXIT_COMPARE_OPEN_FAILED = 2
EXIT_COMPARE_READ_FAILED = 4
#: qemu-img convert draws progress only when it moved by at least this many percent
PROGRESS_MIN_STEP = 1.0
PROGRESS_DONE = 100.0
HELP_OPTIONS = ("help", "?")
OUTPUT_FORMATS = ("human", "json")

USAGE = """\
usage: {prog} [standard options] command [command options]
blockfmt disk image utility (qemu-img compatible)

Command syntax:
  check [-f fmt] [--output=ofmt] [-r [leaks | all]] [-U] [-q] filename
  commit [-f fmt] [-d] [-q] filename
  compare [-f fmt] [-F fmt] [-q] [-s] [-U] filename1 filename2
  convert [-f fmt] [-O output_fmt] [-o options] [-p] [-q] [-U] filename output_filename
  create [-f fmt] [-o options] [-b backing_file [-F backing_fmt]] [-q] filename [size]
  info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename
  map [-f fmt] [--output=ofmt] [-U] filename
  rebase [-f fmt] [-F backing_fmt] [-u] [-q] -b backing_file filename
"""

Command = Callable[[list[str], Reporter, Host], int]


# -------------------------------------------------------------------------
# shared pieces
# -------------------------------------------------------------------------


def _output_format(value: str) -> str:
    if value not in OUTPUT_FORMATS:
        raise _Failure("--output must be used with human or json as argument.")
    return value


class _Failure(BlockFormatError):
    """A problem qemu-img reports with ``error_report`` alone (no ``--help`` pointer).

    :ivar lines: each line is one ``error_report`` call, so each gets the program-name prefix.
    """

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _open(rep: Reporter, host: Host, filename: str, fmt: str | None, **kwargs: Any) -> Image:
    try:
        return open_from_cli(rep, host, filename, fmt, **kwargs)
    except BlockFormatError as err:
        raise _Reported(err, open_context(filename)) from err


class _Reported(BlockFormatError):
    """An error to print with a context prefix (``Could not open 'x': ``, ``<file>: ``)."""

    def __init__(self, err: BlockFormatError, context: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(err.message, hint=err.hint)
        self.context = context
        self.code = code


def _size_argument(text: str) -> int:
    """The size operand of ``create``, with cvtnum's two messages."""
    value = cvtnum(text, INT64_MAX)
    if value is NumberError.INVALID:
        raise _Failure(
            "Invalid image size specified. You may use k, M, G, T, P or E suffixes for",
            "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.",
        )
    if value is NumberError.RANGE:
        raise _Failure(f"Invalid image size specified. Must be between 0 and {INT64_MAX}.")
    return value


def _option_list(text: str) -> str:
    """Reject what qemu-img's ``is_valid_option_list`` rejects: empty, leading or odd trailing commas."""
    stripped = text.rstrip(",")
    if not text or text.startswith(",") or (len(text) - len(stripped)) % 2:
        raise _Failure(f"Invalid option list: {text}")
    return text


def _option_help(rep: Reporter, host: Host, fmt: str) -> int:
    spec = host.spec(fmt)
    if not spec.create_options:
        raise _Failure(f"Format driver '{fmt}' does not support image creation")
    rep.out(render.option_help(spec))
    return EXIT_OK


def _canonical_names(spec: FormatSpec, keys: Sequence[str]) -> set[str]:
    """The ``-o`` names of the given keys (QMP spellings like ``log-size`` map to ``log_size``)."""
    names = {o.blockdev_name: o.name for o in spec.create_options if o.blockdev_name}
    return {names.get(key, key) for key in keys}


# -------------------------------------------------------------------------
# commands
# -------------------------------------------------------------------------


def cmd_create(args: list[str], rep: Reporter, host: Host) -> int:
    """``create [-f fmt] [-o options] [-b backing_file [-F backing_fmt]] [-q] filename [size]``."""
    opts, operands = gnu_getopt(args, "f:ho:qb:F:u", ["help"])
    fmt, option_texts, quiet = DEFAULT_FORMAT, [], False
    backing: str | None = None
    backing_fmt: str | None = None
    for opt, value in opts:
        if opt in ("-h", "--help"):
            return _help(rep)
        if opt == "-f":
            fmt = value
        elif opt == "-b":
            backing = value
        elif opt == "-F":
            backing_fmt = value
        elif opt == "-o":
            option_texts.append(_option_list(value))
        elif opt == "-q":
            quiet = True
    pairs = parse_option_list(",".join(option_texts))
    if any(key in HELP_OPTIONS for key, _ in pairs):
        return _option_help(rep, host, fmt)
    if not operands:
        raise UsageError("Expecting image file name")
    filename = operands[0]
    size = _size_argument(operands[1]) if len(operands) > 1 else None
    if len(operands) > 2:
        raise UsageError(f"Unexpected argument: {operands[2]}")
    try:
        spec = host.spec(fmt)
        given = dict(pairs)
        backing = backing or given.pop("backing_file", None)
        backing_fmt = backing_fmt or given.pop("backing_fmt", None)
        values = coerce_create_options(spec, given)
        if size is None:
            size = values.get("size")
        linked: dict[str, str] = {}
        if backing:
            parent_fmt, parent_size = chain_commands.backing_facts(filename, backing, backing_fmt, host)
            linked = {"backing_file": backing, "backing_fmt": parent_fmt}
            size = parent_size if size is None else size
        if size is None:
            raise InvalidOptionError("Image creation needs a size parameter")
        values["size"] = size
        if not quiet:
            line = render.formatting_line(
                filename, spec, values, _canonical_names(spec, list(given)) | {"size"}
            )
            extra = "".join(f" {key}={value}" for key, value in linked.items())
            rep.out(line.replace(f" size={size}", f" size={size}{extra}", 1))
        given.pop("size", None)
        create_image(filename, fmt, size, host=host, **given, **linked)
    except BlockFormatError as err:
        raise _Reported(err, f"{filename}: ") from err
    return EXIT_OK


@dataclass
class _ImageCommand:
    """The arguments of a command that opens one image (``info``, ``check``, ``map``)."""

    filename: str = ""
    fmt: str | None = None
    output: str = "human"
    force_share: bool = False
    quiet: bool = False
    repair: RepairMode = RepairMode.NONE
    backing_chain: bool = False


def _image_command(args: list[str], short: str = "", long: Sequence[str] = ()) -> _ImageCommand | None:
    """Parse ``[-f fmt] [--output=ofmt] [-U] filename`` and the command's extra options
    (*short*/*long*: ``-q``, ``-r``); None when ``--help`` was asked for."""
    opts, operands = gnu_getopt(args, "f:hU" + short, ["help", "output=", "force-share", "format=", *long])
    command = _ImageCommand()
    for opt, value in opts:
        if opt in ("-h", "--help"):
            return None
        if opt in ("-f", "--format"):
            command.fmt = value
        elif opt == "--output":
            command.output = _output_format(value)
        elif opt in ("-U", "--force-share"):
            command.force_share = True
        elif opt == "--backing-chain":
            command.backing_chain = True
        elif opt == "-q":
            command.quiet = True
        elif opt in ("-r", "--repair"):
            if value not in (RepairMode.LEAKS.value, RepairMode.ALL.value):
                raise UsageError(f"Unknown option value for -r (expecting 'leaks' or 'all'): {value}")
            command.repair = RepairMode(value)
    if len(operands) != 1:
        raise UsageError("Expecting one image file name")
    command.filename = operands[0]
    return command


def _open_command(rep: Reporter, host: Host, command: _ImageCommand, *, read_only: bool) -> Image:
    """Open the image a command names, with its ``-f`` and ``-U``."""
    return _open(
        rep, host, command.filename, command.fmt, read_only=read_only, force_share=command.force_share
    )


def cmd_info(args: list[str], rep: Reporter, host: Host) -> int:
    """``info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename``."""
    command = _image_command(args, long=["backing-chain"])
    if command is None:
        return _help(rep)
    with _open_command(rep, host, command, read_only=True) as image:
        text = chain_commands.info_text(image, command.output, command.backing_chain)
    rep.out(text)
    return EXIT_OK


def cmd_check(args: list[str], rep: Reporter, host: Host) -> int:
    """``check [-f fmt] [--output=ofmt] [-r leaks|all] [-U] [-q] filename``; exit 0/1/2/3/63."""
    command = _image_command(args, "qr:", ["repair="])
    if command is None:
        return _help(rep)
    output, quiet, repair = command.output, command.quiet, command.repair
    read_only = repair is RepairMode.NONE
    with _open_command(rep, host, command, read_only=read_only) as image:
        result = _run_check(rep, image, repair)
        if result is None:
            return EXIT_CHECK_UNSUPPORTED
        if result.corruptions_fixed or result.leaks_fixed:
            if output == "human" and not quiet:
                rep.out(render.check_repaired(result))
            fixed = (result.corruptions_fixed, result.leaks_fixed)
            result = _run_check(rep, image, RepairMode.NONE)
            if result is None:
                return EXIT_CHECK_UNSUPPORTED
            result.corruptions_fixed, result.leaks_fixed = fixed
        if not quiet:
            rep.out(
                render.check_json(result, image.filename, image.format)
                if output == "json"
                else render.check_human(result)
            )
    if result.check_errors:
        rep.error("Check failed")
        return EXIT_FAILURE
    if result.corruptions:
        return EXIT_CHECK_CORRUPTIONS
    if result.leaks:
        return EXIT_CHECK_LEAKS
    return EXIT_OK


def _run_check(rep: Reporter, image: Image, repair: RepairMode) -> CheckResult | None:
    """One check pass; the plugin's per-problem lines go to stderr as QEMU's drivers print them."""
    try:
        result = image.check(repair)
    except UnsupportedOperationError as err:
        rep.error(err.message)
        return None
    except BlockFormatError as err:
        raise _Reported(err, "Check failed: ") from err
    if result.messages:
        rep.err("".join(f"{line}\n" for line in result.messages))
    return result


def cmd_map(args: list[str], rep: Reporter, host: Host) -> int:
    """``map [-f fmt] [--output=ofmt] [-U] filename``."""
    command = _image_command(args)
    if command is None:
        return _help(rep)
    with _open_command(rep, host, command, read_only=True) as image:
        extents = image.map()
        filename = image.filename
        names = chain_commands.layer_names(image)
    if command.output == "json":
        rep.out(render.map_json(extents))
        return EXIT_OK
    rep.out(render.MAP_HUMAN_HEADER)
    rows, complete = render.map_human(extents, filename, names)
    rep.out(rows)
    if not complete:
        raise _Failure("File contains external, encrypted or compressed clusters.")
    return EXIT_OK


def cmd_compare(args: list[str], rep: Reporter, host: Host) -> int:
    """``compare [-f fmt] [-F fmt] [-q] [-s] [-U] a b``.

    Exit codes as qemu-img's: 0 identical, 1 different, 2 an image cannot be opened, 4 read error.
    """
    opts, operands = gnu_getopt(args, "f:F:hqsU", ["help", "force-share"])
    fmts: dict[str, str | None] = {"-f": None, "-F": None}
    quiet = strict = force_share = False
    for opt, value in opts:
        if opt in ("-h", "--help"):
            return _help(rep)
        if opt in fmts:
            fmts[opt] = value
        elif opt == "-q":
            quiet = True
        elif opt == "-s":
            strict = True
        elif opt in ("-U", "--force-share"):
            force_share = True
    if len(operands) != 2:
        raise UsageError("Expecting two image file names")
    say = (lambda text: None) if quiet else rep.out
    try:
        with (
            _open(rep, host, operands[0], fmts["-f"], read_only=True, force_share=force_share) as first,
            _open(rep, host, operands[1], fmts["-F"], read_only=True, force_share=force_share) as second,
        ):
            return _compare_images(say, first, second, strict)
    except _Reported as err:
        err.code = EXIT_COMPARE_OPEN_FAILED
        raise
    except BlockFormatError as err:
        raise _Reported(err, "", EXIT_COMPARE_READ_FAILED) from err


def _compare_images(say: Callable[[str], None], first: Image, second: Image, strict: bool) -> int:
    from ..compare import compare, first_status_mismatch  # here: only compare needs it (start-up time)

    if strict and first.size != second.size:
        say("Strict mode: Image size mismatch!\n")
        return EXIT_FAILURE
    diff = compare(first, second)
    sector = None if diff is None else diff - diff % SECTOR_SIZE
    if strict:
        status = first_status_mismatch(first, second)
        if status is not None and (sector is None or status <= sector):
            say(f"Strict mode: Offset {status} block status mismatch!\n")
            return EXIT_FAILURE
    common = min(first.size, second.size)
    if sector is not None and sector < common:
        say(f"Content mismatch at offset {sector}!\n")
        return EXIT_FAILURE
    if first.size != second.size:
        say("Warning: Image size mismatch!\n")
    if sector is not None:
        say(f"Content mismatch at offset {sector}!\n")
        return EXIT_FAILURE
    say("Images are identical.\n")
    return EXIT_OK


def cmd_convert(args: list[str], rep: Reporter, host: Host) -> int:
    """``convert [-f fmt] [-O output_fmt] [-o options] [-p] [-q] [-U] filename output_filename``."""
    from .. import convert as convert_module  # here: its thread pool costs every other command start-up time

    opts, operands = gnu_getopt(args, "f:hO:o:pqU", ["help", "force-share"])
    fmt, out_fmt, option_texts = None, DEFAULT_FORMAT, []
    show_progress = quiet = force_share = False
    for opt, value in opts:
        if opt in ("-h", "--help"):
            return _help(rep)
        if opt == "-f":
            fmt = value
        elif opt == "-O":
            out_fmt = value
        elif opt == "-o":
            option_texts.append(_option_list(value))
        elif opt == "-p":
            show_progress = True
        elif opt == "-q":
            quiet = True
        elif opt in ("-U", "--force-share"):
            force_share = True
    pairs = parse_option_list(",".join(option_texts))
    if any(key in HELP_OPTIONS for key, _ in pairs):
        return _option_help(rep, host, out_fmt)
    if len(operands) < 2:
        raise _Failure("Must specify image file name")
    if len(operands) > 2:
        raise UsageError("Only one source image may be given")  # blockfmt has no multi-source convert
    source_name, target = operands
    options = dict(pairs)
    coerce_create_options(host.spec(out_fmt), options)  # fail before opening anything, as qemu-img does
    with _open(rep, host, source_name, fmt, read_only=True, force_share=force_share) as source:
        progress = _ProgressPrinter(rep) if show_progress and not quiet else None
        try:
            convert_module.convert(source, target, out_fmt, options=options, progress=progress)
        except BlockFormatError as err:
            raise _Reported(err, f"{target}: error while converting {out_fmt}: ") from err
        finally:
            if progress is not None:
                progress.end()
    return EXIT_OK


class _ProgressPrinter:
    """qemu-img's ``-p`` progress: ``    (NN.NN/100%)\\r`` on every step of at least one percent."""

    def __init__(self, rep: Reporter) -> None:
        self.rep = rep
        self.last = 0.0
        rep.out(render.progress(0.0))

    def __call__(self, percent: float) -> None:
        if percent - self.last >= PROGRESS_MIN_STEP or (percent >= PROGRESS_DONE > self.last):
            self.last = percent
            self.rep.out(render.progress(percent))

    def end(self) -> None:
        self.rep.out(render.progress(self.last) + "\n")


def _help(rep: Reporter) -> int:
    rep.out(USAGE.format(prog=rep.prog))
    return EXIT_OK


COMMANDS: dict[str, Command] = {
    "check": cmd_check,
    "commit": lambda args, rep, host: chain_commands.cmd_commit(args, rep, host, _help),
    "rebase": lambda args, rep, host: chain_commands.cmd_rebase(args, rep, host, _help),
    "compare": cmd_compare,
    "convert": cmd_convert,
    "create": cmd_create,
    "info": cmd_info,
    "map": cmd_map,
}


# -------------------------------------------------------------------------
# entry points
# -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, *, prog: str = PROG, host: Host | None = None) -> int:
    """Run one ``blockfmt-img`` command line (without the program name); return the exit code.

    Library errors become qemu-img's messages; any other exception propagates, because it is a bug.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    rep = Reporter(prog)
    try:
        if not args:
            raise UsageError("Not enough arguments")
        name, rest = args[0], args[1:]
        if name in ("-h", "--help"):
            return _help(rep)
        if name == "--list-plugins":  # blockfmt's own: which format plugins loaded, and which did not
            return list_plugins(rep, host or default_host())
        command = COMMANDS.get(name)
        if command is None:
            raise UsageError(f"Command not found: {name}")
        return command(rest, rep, host or cli_host(rep))
    except _Reported as err:
        rep.exception(err, err.context)
        return err.code
    except _Failure as err:
        for line in err.lines:
            rep.error(line)
        return EXIT_FAILURE
    except BlockFormatError as err:
        rep.exception(err)
        return EXIT_FAILURE


def run() -> NoReturn:
    """Console entry point: exit with :func:`main`'s code."""
    run_console(main)
