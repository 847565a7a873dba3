"""``blockfmt-nbd``: qemu-nbd's everyday options, served by nbdkit with blockfmt's plugin.

The command checks its arguments, opens the image once to report an unusable one (bad format,
corrupt, locked by another writer) in qemu-nbd's words, then replaces itself with nbdkit
(:mod:`blockfmt.nbd.launcher`). nbdkit's plugin reopens the image and holds its locks until the
server exits.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from ..errors import BlockFormatError, InvalidOptionError, UnsupportedFormatError
from ..host import default_host
from ..nbd.export import CacheMode, DiscardMode, ExportSettings, open_export
from ..nbd.launcher import ServerOptions, run_nbdkit
from ..nbd.params import PluginParams
from .args import gnu_getopt
from .report import EXIT_FAILURE, EXIT_OK, Reporter, UsageError, run_console

__all__ = ["main", "run"]

PROG = "blockfmt-nbd"
PORT_MAX = 65535

USAGE = """\
Usage: {prog} [OPTIONS] FILE
Serve a disk image blockfmt can open over NBD (qemu-nbd compatible options; runs nbdkit)

  -h, --help                display this help and exit
  -p, --port=PORT           port to listen on (default `10809')
  -b, --bind=IFACE          interface to bind to (default: all)
  -k, --socket=PATH         path to the unix socket
  -e, --shared=NUM          device can be shared by NUM clients (default '1', 0: no limit)
  -t, --persistent          don't exit on the last connection
  -x, --export-name=NAME    expose export by name (default is empty string)
  -D, --description=TEXT    export a human-readable description
      --fork                fork off the server process and exit the parent
                            once the server is running
      --pid-file=PATH       store the server's process ID in the given file
  -f, --format=FORMAT       set image format (probed when absent)
  -r, --read-only           export read-only
      --cache=MODE          'none', 'writeback' (default), 'writethrough', 'directsync'
                            or 'unsafe' (the host page cache is always used)
      --discard=MODE        set discard mode (ignore, unmap)
      --open-option=KEY=VALUE
                            a format open option, e.g. log_replay=memory to serve a
                            VHDX whose log needs replay read-only without touching it
"""

SHORT_OPTIONS = "hp:b:k:e:tx:D:f:r"
LONG_OPTIONS = (
    "help",
    "port=",
    "bind=",
    "socket=",
    "shared=",
    "persistent",
    "export-name=",
    "description=",
    "fork",
    "pid-file=",
    "format=",
    "read-only",
    "cache=",
    "discard=",
    "open-option=",
)


def parse_args(argv: Sequence[str]) -> ServerOptions | None:
    """qemu-nbd's command line as :class:`ServerOptions`; None for ``--help``.

    :raises UsageError: for an unknown option or a wrong operand count (qemu-nbd adds a --help pointer).
    :raises InvalidOptionError: for a bad option value, in qemu-nbd's words.
    """
    opts, operands = gnu_getopt(argv, SHORT_OPTIONS, LONG_OPTIONS)
    server: dict[str, object] = {}
    fmt: str | None = None
    read_only = False
    cache = CacheMode.WRITEBACK
    discard = DiscardMode.IGNORE
    open_options: dict[str, str] = {}
    for opt, value in opts:
        if opt in ("-h", "--help"):
            return None
        if opt in ("-p", "--port"):
            server["port"] = _port(value)
        elif opt in ("-b", "--bind"):
            server["bind"] = value
        elif opt in ("-k", "--socket"):
            server["socket"] = value
        elif opt in ("-e", "--shared"):
            server["shared"] = _shared(value)
        elif opt in ("-t", "--persistent"):
            server["persistent"] = True
        elif opt in ("-x", "--export-name"):
            server["export_name"] = value
        elif opt in ("-D", "--description"):
            server["description"] = value
        elif opt == "--fork":
            server["fork"] = True
        elif opt == "--pid-file":
            server["pid_file"] = value
        elif opt in ("-f", "--format"):
            fmt = value
        elif opt in ("-r", "--read-only"):
            read_only = True
        elif opt == "--cache":
            cache = _cache(value)
        elif opt == "--discard":
            discard = DiscardMode.parse(value)
        elif opt == "--open-option":
            key, sep, option_value = value.partition("=")
            if not sep or not key:
                raise InvalidOptionError(f"Invalid open option `{value}' (expected KEY=VALUE)")
            open_options[key] = option_value
    if len(operands) != 1:
        raise UsageError("Invalid number of arguments")
    settings = ExportSettings(operands[0], fmt, read_only, cache, discard, open_options)
    params = PluginParams(settings, multi_conn=server.get("shared", 1) != 1)
    return ServerOptions(params, **server)  # type: ignore[arg-type]


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= PORT_MAX:
        raise InvalidOptionError(f"Invalid port number `{text}'")
    return int(text)


def _shared(text: str) -> int:
    if not text.isdigit():
        raise InvalidOptionError(f"Invalid shared device number '{text}'")
    return int(text)


def _cache(text: str) -> CacheMode:
    try:
        return CacheMode(text)
    except ValueError:
        raise InvalidOptionError(f"Invalid cache mode `{text}'") from None


def preflight(rep: Reporter, settings: ExportSettings) -> bool:
    """Open and close the image as the server will, so a refusal is reported here, in one line."""
    try:
        if settings.format is not None and settings.format not in default_host().formats:
            raise UnsupportedFormatError(f"Unknown driver '{settings.format}'")
        open_export(settings).close()
    except BlockFormatError as err:
        rep.exception(err, f"Failed to blk_new_open '{settings.filename}': ")
        return False
    return True


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """Check the arguments and the image; on success never returns (nbdkit replaces the process)."""
    rep = Reporter(prog)
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as err:
        rep.error(err.message)
        rep.err(f"Try `{prog} --help' for more information.\n")
        return EXIT_FAILURE
    except InvalidOptionError as err:
        rep.error(err.message)
        return EXIT_FAILURE
    if options is None:
        rep.out(USAGE.format(prog=prog))
        return EXIT_OK
    if not preflight(rep, options.params.settings):
        return EXIT_FAILURE
    run_nbdkit(options)


def run() -> NoReturn:
    """Console-script entry point."""
    run_console(main)
