"""What every qemu-io command shares: the open image, how it was opened, argument parsing and the
texts qemu-io prints for bad arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...cache import CacheMode
from ...errors import BlockFormatError, InvalidOptionError
from ...host import Host
from ...image import Image
from ..args import NumberError, OptionError, cvtnum, getopt_long, parse_pattern
from ..opening import open_from_cli
from ..report import Reporter

__all__ = [
    "AIO_MODES",
    "CACHE_MODES",
    "DISCARD_MODES",
    "REQUEST_MAX_BYTES",
    "CommandFailed",
    "CommandInfo",
    "OpenSettings",
    "Session",
    "apply_open_option",
    "getopt_pairs",
    "number",
    "parse_options",
    "pattern_byte",
]

#: BDRV_REQUEST_MAX_BYTES: INT_MAX rounded down to a 512-byte sector
REQUEST_MAX_BYTES = (2**31 - 1) // 512 * 512
#: bdrv_parse_cache_mode: mode -> (O_DIRECT, writethrough, no flush)
CACHE_MODES = {
    "none": (True, False, False),
    "off": (True, False, False),
    "directsync": (True, True, False),
    "writeback": (False, False, False),
    "unsafe": (False, False, True),
    "writethrough": (False, True, False),
}
AIO_MODES = ("threads", "native", "io_uring")
#: bdrv_parse_discard_flags: mode -> whether discard requests reach the image
DISCARD_MODES = {"off": False, "ignore": False, "on": True, "unmap": True}


class CommandFailed(Exception):
    """A command ended with an error that it already printed (qemu-io's negative return)."""


@dataclass
class OpenSettings:
    """How qemu-io opens an image (its command line, or ``open``'s own flags)."""

    read_only: bool = False
    force_share: bool = False
    snapshot: bool = False
    image_opts: bool = False
    #: -t writethrough / directsync: every write is flushed before it completes (qemu-io's default)
    writethrough: bool = True
    #: -t none / directsync (O_DIRECT), needed by aio=native
    direct: bool = False
    #: -t unsafe (``cache.no-flush``): flushes, the closing one included, never reach the disk
    no_flush: bool = False
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
            raise CommandFailed
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
                # writethrough is the commands' business (reopen -c changes it without an open)
                cache=CacheMode.UNSAFE if settings.no_flush else CacheMode.WRITEBACK,
            )
        except BlockFormatError as err:
            self.rep.exception(err, context)
            raise CommandFailed from err
        self.settings = settings

    @property
    def current(self) -> Image:
        """The open image (commands that need one only run when there is one)."""
        assert self.image is not None
        return self.image

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
    #: None: no argument text (``flush -- ...``); "" still adds its space (``map  -- ...``)
    args: str | None
    oneline: str
    needs_file: bool = True
    writes: bool = False
    alias: str | None = None

    def usage(self) -> str:
        args = "" if self.args is None else f"{self.args} "
        return f"{self.name} {args}-- {self.oneline}\n"


def getopt_pairs(
    session: Session, info: CommandInfo, argv: list[str], shortopts: str
) -> tuple[list[tuple[str, str]], list[str]]:
    """A command's options in order (repeatable ones such as ``open -o``), and its operands.

    A bad option is glibc's message on stderr and the usage line on stdout, as qemu-io prints them.
    """
    try:
        return getopt_long(argv[1:], shortopts)
    except OptionError as err:
        session.rep.err(f"{argv[0]}: {err}\n")
        session.rep.out(info.usage())
        raise CommandFailed from None


def parse_options(
    session: Session, info: CommandInfo, argv: list[str], shortopts: str
) -> tuple[dict[str, str], list[str]]:
    """A command's options (the last of each wins) and its operands."""
    operands = argv[1:]
    for arg in operands:
        if arg[:1] == "-":
            break
    else:  # no option at all, as in most commands of a long script: nothing to parse
        return {}, operands
    pairs, operands = getopt_pairs(session, info, argv, shortopts)
    return dict(pairs), operands


def number(session: Session, text: str, shown: str | None = None) -> int:
    """qemu-io's ``cvtnum`` + ``print_cvtnum_err`` (which names *shown*, *text* by default)."""
    value = cvtnum(text)
    if value is NumberError.INVALID:
        session.rep.out(
            f"Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- {shown or text}\n"
        )
        raise CommandFailed
    if value is NumberError.RANGE:
        session.rep.out(f"Parsing error: argument too large -- {shown or text}\n")
        raise CommandFailed
    return value


def pattern_byte(session: Session, text: str) -> int:
    value = parse_pattern(text)
    if value is None:
        session.rep.out(f"{text} is not a valid pattern byte\n")
        raise CommandFailed
    return value


def apply_open_option(rep: Reporter, settings: OpenSettings, opt: str, value: str) -> bool:
    """One of qemu-io's open options (command line or ``open``) into *settings*; False after the
    error for a bad value."""
    if opt in ("-r", "--read-only"):
        settings.read_only = True
    elif opt in ("-U", "--force-share"):
        settings.force_share = True
    elif opt in ("-s", "--snapshot"):
        settings.snapshot = True
    elif opt in ("-n", "--nocache"):
        settings.direct, settings.writethrough, settings.no_flush = CACHE_MODES["none"]
    elif opt in ("-k", "--native-aio"):
        settings.native_aio = True
    elif opt in ("-t", "--cache"):
        if value not in CACHE_MODES:
            rep.error(f"Invalid cache option: {value}")
            return False
        settings.direct, settings.writethrough, settings.no_flush = CACHE_MODES[value]
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
    # -C (copy-on-read: no backing file to copy from), -m (buffer alignment) and -T (tracing)
    # change nothing that can be observed here
    return True
