"""QMP ``blockdev-create`` option dictionaries, accepted by blockfmt.

QEMU creates images over QMP with ``{"driver": "vhdx", "file": <node>, "size": ..., "log-size":
..., "block-size": ..., "subformat": ..., "block-state-zero": ...}`` (qapi/block-core.json,
``BlockdevCreateOptions``). :func:`blockdev_create` takes the same dictionary and maps it onto
:func:`blockfmt.create`, which understands the QMP option spellings through
:attr:`~blockfmt.driver.CreateOption.blockdev_name`. It knows no format: every key other than
``driver``, ``file`` and ``size`` is handed to the format's create options.

``file`` is a ``BlockdevRef`` as in QMP: a node name (looked up in *nodes*, the files that
``blockdev-add`` made known), or an inline ``{"driver": "file", "filename": ...}``. A
:class:`os.PathLike` is taken as the file itself. The ``file`` driver is supported too, as QMP
uses it to make the empty file an image is then written into.

Command line: ``python -m blockfmt.blockdev [--node NAME=PATH]... '<json options>'``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .api import create
from .errors import BlockFormatError, BlockIOError, InvalidOptionError
from .host import Host, default_host

__all__ = ["FILE_DRIVER", "blockdev_create", "main", "resolve_file"]

#: the protocol driver QMP creates plain files with (``BlockdevCreateOptionsFile``)
FILE_DRIVER = "file"
#: QAPI ``PreallocMode`` values a format may offer as an on/off option (VDI ``static``)
_PREALLOC_AS_BOOL = {"off": False, "metadata": True}


def resolve_file(ref: Any, nodes: Mapping[str, str]) -> str:
    """Return the file name a ``BlockdevRef`` points at.

    :raises InvalidOptionError: for an unknown node name (QEMU's message) or a malformed reference.
    """
    if isinstance(ref, os.PathLike):
        return os.fspath(ref)
    if isinstance(ref, str):
        if ref not in nodes:
            raise InvalidOptionError(f"Cannot find device='{ref}' nor node-name='{ref}'")
        return nodes[ref]
    if isinstance(ref, Mapping):
        if ref.get("driver") != FILE_DRIVER:
            raise InvalidOptionError(f"Invalid BlockdevRef: only driver '{FILE_DRIVER}' is supported")
        filename = ref.get("filename")
        if not isinstance(filename, str):
            raise InvalidOptionError("Parameter 'filename' is missing")
        return filename
    raise InvalidOptionError("Invalid parameter type for 'file', expected: BlockdevRef")


def _create_file(options: Mapping[str, Any]) -> None:
    """The ``file`` driver: make *filename* a file of *size* zero bytes (QEMU's ``raw_co_create``)."""
    unknown = set(options) - {"driver", "filename", "size", "preallocation"}
    if unknown:
        raise InvalidOptionError(f"Parameter '{sorted(unknown)[0]}' is unexpected")
    if options.get("preallocation", "off") != "off":
        raise InvalidOptionError(f"Unsupported preallocation mode '{options['preallocation']}'")
    filename, size = options.get("filename"), options.get("size")
    if not isinstance(filename, str):
        raise InvalidOptionError("Parameter 'filename' is missing")
    if not isinstance(size, int) or size < 0:
        raise InvalidOptionError("Parameter 'size' is missing")
    try:
        with open(filename, "r+b" if os.path.exists(filename) else "wb") as fh:
            fh.truncate(size)
    except OSError as err:
        raise BlockIOError.from_os_error(err, f"Could not create file '{filename}'") from err


def _format_options(host: Host, driver: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Translate QMP values the format spells differently (a ``preallocation`` enum for a bool)."""
    spec = host.spec(driver)
    bool_options = {o.blockdev_name for o in spec.create_options if o.type == "bool" and o.blockdev_name}
    result: dict[str, Any] = {}
    for key, value in options.items():
        if key in bool_options and isinstance(value, str) and value in _PREALLOC_AS_BOOL:
            value = _PREALLOC_AS_BOOL[value]
        result[key] = value
    return result


def blockdev_create(
    options: Mapping[str, Any], *, nodes: Mapping[str, str] | None = None, host: Host | None = None
) -> None:
    """Create the image QMP ``blockdev-create`` would create from *options*.

    :param options: a ``BlockdevCreateOptions`` dictionary (QMP key spellings).
    :param nodes: node name -> file name, the nodes ``blockdev-add`` made known.
    :raises InvalidOptionError: for a missing size, an unknown node or a bad option, with QEMU's text.
    :raises UnsupportedFormatError: when no plugin provides ``driver``.
    """
    host = host or default_host()
    driver = options.get("driver")
    if not isinstance(driver, str):
        raise InvalidOptionError("Parameter 'driver' is missing")
    if driver == FILE_DRIVER:
        _create_file(options)
        return
    size = options.get("size")
    if not isinstance(size, int) or isinstance(size, bool):
        raise InvalidOptionError("Parameter 'size' is missing")
    if "file" not in options:
        raise InvalidOptionError("Parameter 'file' is missing")
    host.spec(driver)
    target = resolve_file(options["file"], nodes or {})
    rest = {k: v for k, v in options.items() if k not in ("driver", "file", "size")}
    create(target, driver, size, exact=True, host=host, **_format_options(host, driver, rest))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m blockfmt.blockdev``: create one image from a JSON options dictionary."""
    parser = argparse.ArgumentParser(prog="python -m blockfmt.blockdev", description=__doc__.splitlines()[0])
    parser.add_argument("--node", action="append", default=[], metavar="NAME=PATH", help="a known node")
    parser.add_argument("options", help="BlockdevCreateOptions as JSON")
    args = parser.parse_args(argv)
    nodes = dict(item.partition("=")[::2] for item in args.node)
    try:
        options = json.loads(args.options)
    except json.JSONDecodeError as err:
        print(f"blockfmt-blockdev: invalid JSON: {err}", file=sys.stderr)
        return 1
    if not isinstance(options, dict):
        print("blockfmt-blockdev: options must be a JSON object", file=sys.stderr)
        return 1
    try:
        blockdev_create(options, nodes=nodes)
    except BlockFormatError as err:
        print(f"blockfmt-blockdev: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
