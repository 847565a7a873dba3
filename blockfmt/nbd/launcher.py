"""Build and run the ``nbdkit`` command line that serves an image through blockfmt's plugin.

qemu-nbd's everyday behaviours map onto nbdkit's own options and standard filters rather than
onto code of ours: ``--filter=exitlast`` is qemu-nbd's default of exiting when the last client
leaves (``-t`` drops it), ``--filter=limit`` is ``-e/--shared``, and ``--filter=exportname`` with
``exportname-strict`` makes ``-x``/``-D`` behave as in qemu-nbd (only the named export exists).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ..errors import BlockFormatError
from .params import PluginParams

__all__ = [
    "SYS_PATH_ENV",
    "NbdkitMissingError",
    "ServerOptions",
    "check_nbdkit_python",
    "find_nbdkit",
    "nbdkit_command",
    "nbdkit_environment",
    "run_nbdkit",
]

#: read by :mod:`.nbdkit_script` (which cannot import this module before the path is set)
SYS_PATH_ENV = "BLOCKFMT_NBD_SYS_PATH"
#: how long ``--fork --pid-file`` waits for the background server to write its PID
PID_FILE_TIMEOUT = 30.0
SCRIPT = Path(__file__).with_name("nbdkit_script.py")
INSTALL_HINT = "install the Debian packages nbdkit and nbdkit-plugin-python"
_PYTHON_VERSION = re.compile(r"^python_version=(\d+)\.(\d+)", re.MULTILINE)


class NbdkitMissingError(BlockFormatError):
    """nbdkit, or its Python plugin, is not installed or cannot run blockfmt."""


@dataclass(frozen=True)
class ServerOptions:
    """qemu-nbd's server-side options; :attr:`params` is what the plugin itself needs."""

    params: PluginParams
    socket: str | None = None
    port: int | None = None
    bind: str | None = None
    export_name: str = ""
    description: str | None = None
    shared: int = 1
    persistent: bool = False
    fork: bool = False
    pid_file: str | None = None


def find_nbdkit() -> str:
    """:raises NbdkitMissingError: when ``nbdkit`` is not on ``PATH``."""
    found = shutil.which("nbdkit")
    if found is None:
        raise NbdkitMissingError(f"nbdkit not found: {INSTALL_HINT}")
    return found


def check_nbdkit_python(nbdkit: str) -> None:
    """Refuse to start when nbdkit's embedded Python could not load the blockfmt installed here.

    Compiled dependencies (``crc32c``) are built for one major.minor version; a mismatch would
    surface as an import error inside nbdkit, far from the cause.

    :raises NbdkitMissingError: when the Python plugin is missing or embeds another version.
    """
    try:
        dump = subprocess.run(
            [nbdkit, "python", "--dump-plugin"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NbdkitMissingError(f"cannot run '{nbdkit} python --dump-plugin': {err}") from err
    match = _PYTHON_VERSION.search(dump.stdout)
    if dump.returncode != 0 or match is None:
        raise NbdkitMissingError(f"nbdkit's Python plugin is not available: {INSTALL_HINT}")
    embedded = (int(match.group(1)), int(match.group(2)))
    if embedded != sys.version_info[:2]:
        raise NbdkitMissingError(
            f"nbdkit's Python plugin embeds Python {embedded[0]}.{embedded[1]}, but blockfmt runs under "
            f"Python {sys.version_info[0]}.{sys.version_info[1]}: install blockfmt for "
            f"Python {embedded[0]}.{embedded[1]}"
        )


def nbdkit_command(options: ServerOptions, nbdkit: str = "nbdkit") -> list[str]:
    """The full ``nbdkit`` argv for *options* (without running anything)."""
    argv = [nbdkit]
    if not options.fork:
        argv.append("--foreground")
    if options.params.settings.read_only:
        argv.append("--readonly")
    if options.socket is not None:
        argv += ["--unix", options.socket]
    else:
        if options.port is not None:
            argv += ["--port", str(options.port)]
        if options.bind is not None:
            argv += ["--ipaddr", options.bind]
    if options.pid_file is not None:
        argv += ["--pidfile", options.pid_file]
    if not options.persistent:
        argv.append("--filter=exitlast")
    argv += ["--filter=limit", "--filter=exportname", "python", str(SCRIPT)]
    argv += [
        f"limit={options.shared}",
        f"exportname={options.export_name}",
        "exportname-strict=true",
        "exportname-list=explicit",
    ]
    if options.export_name:
        argv.append(f"default-export={options.export_name}")
    if options.description is not None:
        argv.append(f"exportdesc=fixed:{options.description}")
    return argv + options.params.to_args()


def nbdkit_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """*base* (default ``os.environ``) plus this interpreter's import directories for the plugin.

    The standard library is left out: nbdkit's interpreter has its own, of the same version. Its
    site-packages stays, even where it lies inside the standard library's folder (a pyenv or
    system-wide install rather than a venv): that is where blockfmt and its dependencies are.
    """
    stdlib = {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")}
    site_dirs = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}

    def under(entry: str, roots: set[str]) -> bool:
        return any(entry == root or entry.startswith(root + os.sep) for root in roots)

    entries = [
        os.path.abspath(entry)
        for entry in sys.path
        if entry and (under(entry, site_dirs) or not under(entry, stdlib)) and not entry.endswith(".zip")
    ]
    env = dict(os.environ if base is None else base)
    env[SYS_PATH_ENV] = os.pathsep.join(entries)
    return env


def run_nbdkit(options: ServerOptions) -> NoReturn:
    """Replace this process with nbdkit (its PID, signals and exit status become the server's).

    :raises NbdkitMissingError: when nbdkit cannot serve blockfmt here.
    """
    nbdkit = find_nbdkit()
    check_nbdkit_python(nbdkit)
    argv = nbdkit_command(options, nbdkit)
    sys.stdout.flush()
    sys.stderr.flush()
    if options.fork and options.pid_file is not None:
        sys.exit(_fork_and_wait_for_pid_file(argv, options.pid_file))
    os.execve(nbdkit, argv, nbdkit_environment())


def _fork_and_wait_for_pid_file(argv: list[str], pid_file: str) -> int:
    """Run a forking nbdkit and return only once its PID file is written, as qemu-nbd --fork does.

    nbdkit's parent exits right after fork(2), before the background server writes ``--pidfile``;
    a caller that reads the file as soon as we return would otherwise race the server.
    """
    returncode = subprocess.run(argv, env=nbdkit_environment(), check=False).returncode
    if returncode != 0:
        return returncode
    deadline = time.monotonic() + PID_FILE_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            if Path(pid_file).read_text().strip():
                return 0
        time.sleep(0.01)
    print(
        f"blockfmt-nbd: nbdkit wrote no PID file to '{pid_file}' within {PID_FILE_TIMEOUT:g} s",
        file=sys.stderr,
    )
    return 1
