"""What every ``blockfmt-img`` subcommand shares: error types, option checks and image opening.

Subcommands live in their own ``img_*`` modules and are imported only when run (start-up time
matters: qemu-iotests starts hundreds of processes). A subcommand is a function
``(args, reporter, host) -> exit code``; it raises :class:`Failure`, :class:`Reported`,
:class:`~blockfmt.cli.report.UsageError` or :class:`ShowHelp`, and :mod:`blockfmt.cli.img`
turns those into qemu-img's output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..cache import CacheMode
from ..errors import BlockFormatError, InvalidOptionError
from ..records import Record
from .args import INT64_MAX, NumberError, cvtnum, gnu_getopt
from .report import EXIT_FAILURE, EXIT_OK, Reporter, UsageError, open_context

if TYPE_CHECKING:
    from ..driver import FormatSpec
    from ..host import Host
    from ..image import Image

__all__ = [
    "DEFAULT_FORMAT",
    "HELP_OPTIONS",
    "Command",
    "CommonOptions",
    "Failure",
    "ObjectHelp",
    "Reported",
    "ShowHelp",
    "canonical_names",
    "open_image",
    "option_help",
    "option_list",
    "output_format",
    "parse_common",
    "size_argument",
    "snapshot_refusal",
]

DEFAULT_FORMAT = "raw"
HELP_OPTIONS = ("help", "?")
OUTPUT_FORMATS = ("human", "json")

Command = Callable[[list[str], Reporter, "Host"], int]


class ShowHelp(Exception):
    """``-h``/``--help`` anywhere: qemu-img prints its whole help and exits 0."""


class ObjectHelp(Exception):
    """``--object help`` or ``--object <type>,help``: print :attr:`text` and exit 0."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Failure(BlockFormatError):
    """A problem qemu-img reports with ``error_report`` alone (no ``--help`` pointer).

    :ivar lines: each line is one ``error_report`` call, so each gets the program-name prefix.
    :ivar code: the exit code (1 for nearly everything qemu-img refuses).
    """

    def __init__(self, *lines: str, code: int = EXIT_FAILURE) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines
        self.code = code


class Reported(BlockFormatError):
    """An error to print with a context prefix (``Could not open 'x': ``, ``<file>: ``)."""

    def __init__(self, err: BlockFormatError, context: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(err.message, hint=err.hint)
        self.context = context
        self.code = code


def output_format(value: str) -> str:
    """``--output``'s argument, with qemu-img's refusal of anything but human/json."""
    if value not in OUTPUT_FORMATS:
        raise Failure("--output must be used with human or json as argument.")
    return value


def size_argument(text: str) -> int:
    """The size operand of ``create``, with cvtnum's two messages."""
    value = cvtnum(text, INT64_MAX)
    if value is NumberError.INVALID:
        raise Failure(
            "Invalid image size specified. You may use k, M, G, T, P or E suffixes for",
            "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.",
        )
    if value is NumberError.RANGE:
        raise Failure(f"Invalid image size specified. Must be between 0 and {INT64_MAX}.")
    return value


def size_option(text: str, what: str) -> int:
    """A size-valued option (``--start-offset``, ``bs=``, ``-S``, ...) with cvtnum's suffix message."""
    value = cvtnum(text, INT64_MAX)
    if isinstance(value, NumberError):
        raise Failure(
            f"Invalid {what} specified. You may use k, M, G, T, P or E suffixes for",
            "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.",
        )
    return value


def option_list(text: str) -> str:
    """Reject what qemu-img's ``is_valid_option_list`` rejects: empty, leading or odd trailing commas."""
    stripped = text.rstrip(",")
    if not text or text.startswith(",") or (len(text) - len(stripped)) % 2:
        raise Failure(f"Invalid option list: {text}")
    return text


def option_help(rep: Reporter, host: Host, fmt: str) -> int:
    """``-o help`` for *fmt*: its creation options."""
    spec = host.spec(fmt)
    if not spec.create_options:
        raise Failure(f"Format driver '{fmt}' does not support image creation")
    from . import render

    rep.out(render.option_help(spec))
    return EXIT_OK


def canonical_names(spec: FormatSpec, keys: Sequence[str]) -> set[str]:
    """The ``-o`` names of the given keys (QMP spellings like ``log-size`` map to ``log_size``)."""
    names = {o.blockdev_name: o.name for o in spec.create_options if o.blockdev_name}
    return {names.get(key, key) for key in keys}


def open_image(
    rep: Reporter,
    host: Host,
    filename: str,
    fmt: str | None,
    *,
    read_only: bool,
    force_share: bool = False,
    image_opts: bool = False,
    cache: CacheMode = CacheMode.WRITEBACK,
) -> Image:
    """Open the image a command names (with *image_opts*, an option string such as
    ``driver=vhdx,file.filename=x``) in cache mode *cache*; errors get qemu-img's
    ``Could not open '<file>': `` context."""
    from .opening import open_from_cli

    if image_opts and fmt is not None:
        raise Failure("--image-opts and --format are mutually exclusive")
    try:
        return open_from_cli(
            rep,
            host,
            filename,
            fmt,
            read_only=read_only,
            force_share=force_share,
            image_opts=image_opts,
            cache=cache,
        )
    except BlockFormatError as err:
        raise Reported(err, open_context(filename)) from err


def open_parsed(
    rep: Reporter,
    host: Host,
    parsed: CommonOptions,
    filename: str,
    *,
    read_only: bool,
    cache: CacheMode | None = None,
) -> Image:
    """:func:`open_image` with the format, ``-U`` and ``--image-opts`` a command line gave; the
    cache mode is *cache* when given, else ``-t`` (``writeback`` without it, as in QEMU)."""
    return open_image(
        rep,
        host,
        filename,
        parsed.fmt,
        read_only=read_only,
        force_share=parsed.force_share,
        image_opts=parsed.image_opts,
        cache=cache or parsed.cache or CacheMode.WRITEBACK,
    )


class CommonOptions(Record):
    """The options most subcommands share, after parsing.

    :ivar objects: ``--object`` definitions, in order (validated by :mod:`.img_objects`).
    :ivar rest: the command's own options, ``(option, value)`` in command-line order.
    """

    _fields = (
        "fmt",
        "output",
        "force_share",
        "quiet",
        "image_opts",
        "cache",
        "source_cache",
        "objects",
        "operands",
        "rest",
    )
    __slots__ = _fields
    fmt: str | None
    output: str
    force_share: bool
    quiet: bool
    image_opts: bool
    #: ``-t``: the cache mode of the image the command writes (None: the command's default)
    cache: CacheMode | None
    #: ``-T``: the cache mode of the images it reads
    source_cache: CacheMode | None
    objects: list[str]
    operands: list[str]
    rest: list[tuple[str, str]]

    def __init__(
        self,
        fmt: str | None = None,
        output: str = "human",
        force_share: bool = False,
        quiet: bool = False,
        image_opts: bool = False,
        cache: CacheMode | None = None,
        source_cache: CacheMode | None = None,
        objects: list[str] | None = None,
        operands: list[str] | None = None,
        rest: list[tuple[str, str]] | None = None,
    ) -> None:
        self.fmt = fmt
        self.output = output
        self.force_share = force_share
        self.quiet = quiet
        self.image_opts = image_opts
        self.cache = cache
        self.source_cache = source_cache
        self.objects = [] if objects is None else objects
        self.operands = [] if operands is None else operands
        self.rest = [] if rest is None else rest


def cache_mode(value: str, *, source: bool) -> CacheMode:
    """A ``-t`` (target) or ``-T`` (source) cache mode, or qemu-img's error for a bad one."""
    try:
        return CacheMode.parse(value)
    except InvalidOptionError:
        raise Failure(f"Invalid {'source ' if source else ''}cache option: {value}") from None


def parse_common(
    args: Sequence[str],
    short: str,
    long: Sequence[str] = (),
    *,
    source_cache: str | None = "T",
) -> CommonOptions:
    """Parse a subcommand's command line: the shared options are handled, the others collected.

    *short*/*long* list every option the subcommand accepts, in getopt syntax; the shared ones
    among them (``-f``, ``-q``, ``-U``, ``-t``, ``-T``, ``--output``, ``--object``,
    ``--image-opts``, ``-h``) need no code in the subcommand. *source_cache* names the option
    that takes a source cache mode (``-T``); None leaves ``-t``/``-T`` to the subcommand.
    """
    opts, operands = gnu_getopt(args, short, long)
    parsed = CommonOptions(operands=operands)
    for opt, value in opts:
        name = opt.lstrip("-")
        if name in ("h", "help"):
            raise ShowHelp
        if name in ("f", "format"):
            parsed.fmt = value
        elif name == "output":
            parsed.output = output_format(value)
        elif name in ("U", "force-share"):
            parsed.force_share = True
        elif name in ("q", "quiet"):
            parsed.quiet = True
        elif name == "object":
            from .img_objects import check_object

            check_object(value)
            parsed.objects.append(value)
        elif name == "image-opts":
            parsed.image_opts = True
        elif name in ("t", "T") and not opt.startswith("--") and source_cache is not None:
            mode = cache_mode(value, source=name == source_cache)
            if name == source_cache:
                parsed.source_cache = mode
            else:
                parsed.cache = mode
            parsed.rest.append((opt, value))
        else:
            parsed.rest.append((opt, value))
    return parsed


def snapshot_refusal(fmt: str) -> str:
    """What qemu-img says to ``-l snapshot`` for a format without internal snapshots."""
    return (
        f"Failed to load snapshot: Block format '{fmt}' used by device '' "
        "does not support temporarily loading internal snapshots"
    )


def one_filename(parsed: CommonOptions) -> str:
    """The single image operand of info/check/map."""
    if len(parsed.operands) != 1:
        raise UsageError("Expecting one image file name")
    return parsed.operands[0]


def quiet_printer(rep: Reporter, quiet: bool) -> Callable[[str], None]:
    """``rep.out`` unless ``-q`` asked for silence."""
    return (lambda text: None) if quiet else rep.out
