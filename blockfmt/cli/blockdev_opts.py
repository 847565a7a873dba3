"""QEMU's block option trees on the command line: ``json:{...}`` filenames, ``--image-opts`` and ``open -o``.

qemu-img and qemu-io accept an image not only as a file name but as a tree of block-node options:
``driver=vhdx,file.filename=x,file.locking=off`` (QemuOpts syntax, dotted keys) or
``json:{"driver": "raw", "file": {"driver": "vhdx", "file": {"filename": "x"}}}`` (QEMU's JSON,
which also takes single-quoted strings). This module turns either into a :class:`FormatNode` /
:class:`FileNode` tree, checking option names and values with QEMU's messages; opening the tree
is :mod:`blockfmt.cli.opening`'s job.

Supported drivers: the ``file`` protocol and every format the host knows (raw's ``offset`` and
``size`` included), stacked in any order (format over format).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InvalidOptionError, UnsupportedFormatError
from ..records import Record

__all__ = [
    "JSON_PREFIX",
    "FileNode",
    "FormatNode",
    "Node",
    "build_node",
    "check_format_options",
    "parse_image_opts",
    "parse_json_filename",
    "parse_qemu_opts",
]

JSON_PREFIX = "json:"
PROTOCOL_FILE = "file"
#: file-posix's drivers: ``file`` for regular files, the others for devices
HOST_PROTOCOLS = (PROTOCOL_FILE, "host_device", "host_cdrom")
BLKDEBUG = "blkdebug"
#: options every block node takes (``BlockdevOptionsBase`` / bdrv_runtime_opts); dotted = nested
COMMON_OPTIONS = frozenset(
    {
        "node-name",
        "read-only",
        "auto-read-only",
        "force-share",
        "discard",
        "detect-zeroes",
        "cache.direct",
        "cache.no-flush",
        "cache.writeback",
    }
)
#: runtime options of file-posix (``raw_runtime_opts``)
FILE_OPTIONS = frozenset(
    {"filename", "locking", "aio", "aio-max-batch", "pr-manager", "x-check-cache-dropped", "drop-cache"}
)
#: blkdebug's options that only shape requests (alignment, limits, permissions): no effect here
BLKDEBUG_OPTIONS = frozenset(
    {
        "align",
        "max-transfer",
        "opt-write-zero",
        "max-write-zero",
        "opt-discard",
        "max-discard",
        "take-child-perms",
        "unshare-child-perms",
        "config",
        "x-image",
    }
)
#: blkdebug's rules, which inject errors or suspend requests: blockfmt has no hooks for them
BLKDEBUG_RULES = ("inject-error", "set-state")
BLKDEBUG_PREFIX = "blkdebug:"
_NO_INJECTION = "blockfmt cannot inject errors"
#: format-specific runtime options QEMU 7.2 has for the formats blockfmt opens
FORMAT_OPTIONS: Mapping[str, frozenset[str]] = {"raw": frozenset({"offset", "size"})}
_BOOL_WORDS = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}
_SIZE_HELP = (
    "\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
    "and exabytes, respectively."
)


class FileNode(Record):
    """The ``file`` protocol (or ``host_device``, ``host_cdrom``): a host file, locked unless
    ``locking=off``."""

    _fields = ("filename", "locking", "read_only", "force_share", "driver")
    __slots__ = _fields
    filename: str
    locking: bool
    read_only: bool
    force_share: bool
    #: the driver named in the options; None when QEMU would probe it (any file type is fine)
    driver: str | None

    def __init__(
        self,
        filename: str,
        locking: bool = True,
        read_only: bool = False,
        force_share: bool = False,
        driver: str | None = None,
    ) -> None:
        self.filename = filename
        self.locking = locking
        self.read_only = read_only
        self.force_share = force_share
        self.driver = driver


class FormatNode(Record):
    """A format driver over a child node; *driver* None means probe the child's first bytes.

    :ivar options: the format's own options (a new empty dict when not given).
    """

    _fields = ("driver", "file", "options", "read_only", "force_share")
    __slots__ = _fields
    driver: str | None
    file: Node
    options: dict[str, Any]
    read_only: bool
    force_share: bool

    def __init__(
        self,
        driver: str | None,
        file: Node,
        options: dict[str, Any] | None = None,
        read_only: bool = False,
        force_share: bool = False,
    ) -> None:
        self.driver = driver
        self.file = file
        self.options = {} if options is None else options
        self.read_only = read_only
        self.force_share = force_share


Node = FileNode | FormatNode


# -------------------------------------------------------------------------
# syntax: QEMU's JSON and QemuOpts
# -------------------------------------------------------------------------


@functools.cache
def _json_token() -> re.Pattern[str]:
    """The JSON token pattern, compiled on first use: only ``json:`` names need it, and compiling
    it was a visible part of every start-up."""
    return re.compile(
        r"""\s*(?:(?P<punct>[{}\[\]:,])|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
        r"""|(?P<num>-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<word>true|false|null))""",
        re.S,
    )


class _JsonParser:
    """QEMU's JSON dialect (qobject/json-parser.c): standard JSON plus single-quoted strings."""

    _ESCAPES = {
        '"': '"',
        "'": "'",
        "\\": "\\",
        "/": "/",
        "b": "\b",
        "f": "\f",
        "n": "\n",
        "r": "\r",
        "t": "\t",
    }

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> InvalidOptionError:
        return InvalidOptionError(f"Could not parse the JSON options: JSON parse error, {what}")

    def token(self) -> tuple[str, str]:
        match = _json_token().match(self.text, self.pos)
        if match is None:
            if self.text[self.pos :].strip():
                raise self.error("invalid token")
            raise self.error("premature EOI")
        self.pos = match.end()
        kind = match.lastgroup or ""
        return kind, match.group(kind)

    def value(self, token: tuple[str, str] | None = None) -> Any:
        kind, text = token or self.token()
        if kind == "str":
            return self.string(text)
        if kind == "num":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "word":
            return {"true": True, "false": False, "null": None}[text]
        if text == "{":
            return self.members()
        if text == "[":
            return self.elements()
        raise self.error("expecting value")

    def members(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        kind, text = self.token()
        if text == "}":
            return result
        while True:
            if kind != "str":
                raise self.error("key is not a string in object")
            key = self.string(text)
            if self.token()[1] != ":":
                raise self.error("missing : in object pair")
            result[key] = self.value()
            kind, text = self.token()
            if text == "}":
                return result
            if text != ",":
                raise self.error("expected separator in dict")
            kind, text = self.token()
            if text == "}":
                raise self.error("expecting value")

    def elements(self) -> list[Any]:
        result: list[Any] = []
        token = self.token()
        if token[1] == "]":
            return result
        while True:
            result.append(self.value(token))
            text = self.token()[1]
            if text == "]":
                return result
            if text != ",":
                raise self.error("expected separator in list")
            token = self.token()

    def string(self, quoted: str) -> str:
        body = quoted[1:-1]
        out: list[str] = []
        i = 0
        while i < len(body):
            char = body[i]
            if char != "\\":
                out.append(char)
                i += 1
                continue
            esc = body[i + 1]
            if esc == "u":
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
            elif esc in self._ESCAPES:
                out.append(self._ESCAPES[esc])
                i += 2
            else:
                raise self.error("invalid escape sequence in string")
        return "".join(out)


def parse_json_filename(filename: str) -> dict[str, Any]:
    """The options of a ``json:{...}`` filename, as a nested dict (dotted keys are nested too).

    :raises InvalidOptionError: with QEMU's ``Could not parse the JSON options: ...`` or
        ``Invalid JSON object given``.
    """
    parser = _JsonParser(filename[len(JSON_PREFIX) :])
    if not parser.text.strip():
        raise InvalidOptionError("Could not parse the JSON options: Expecting a JSON value")
    tree = parser.value()
    if parser.text[parser.pos :].strip():
        raise InvalidOptionError("Could not parse the JSON options: Expecting at most one JSON value")
    if not isinstance(tree, dict):
        raise InvalidOptionError("Invalid JSON object given")
    return _nest(tree)


def parse_qemu_opts(text: str, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``key=value,key2=value2`` (``,,`` is a comma) as QemuOpts reads it, dotted keys nested.

    A bare ``key`` means ``key=on``; QEMU 7.2 warns that this short form is deprecated, through
    *warn* here (``qemu-io: warning: ...`` is the caller's prefix).
    """
    flat: dict[str, Any] = {}
    pos = 0
    while pos < len(text):
        key_end = pos
        while key_end < len(text) and text[key_end] not in "=,":
            key_end += 1
        key = text[pos:key_end]
        if key_end < len(text) and text[key_end] == "=":
            value, pos = _opts_value(text, key_end + 1)
        else:
            if warn is not None:
                warn(f"short-form boolean option '{key}' deprecated\nPlease use {key}=on instead")
            value, pos = "on", key_end + 1
        if key:
            flat[key] = value
    return _nest(flat)


def _opts_value(text: str, pos: int) -> tuple[str, int]:
    """A QemuOpts value from *pos* to the next single comma; returns it and where the next key starts."""
    out: list[str] = []
    while pos < len(text):
        if text[pos] == ",":
            if text[pos + 1 : pos + 2] == ",":
                out.append(",")
                pos += 2
                continue
            return "".join(out), pos + 1
        out.append(text[pos])
        pos += 1
    return "".join(out), pos


def parse_image_opts(text: str, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """An ``--image-opts`` argument; QEMU reads it as QemuOpts."""
    return parse_qemu_opts(text, warn)


def _nest(tree: Mapping[str, Any]) -> dict[str, Any]:
    """QEMU's ``qdict_crumple``: ``{"file.filename": x}`` becomes ``{"file": {"filename": x}}``."""
    nested: dict[str, Any] = {}
    for key, value in tree.items():
        head, dot, rest = key.partition(".")
        if isinstance(value, dict):
            value = _nest(value)
        if dot:
            value = _nest({rest: value})
        if isinstance(value, dict) and isinstance(nested.get(head), dict):
            nested[head] = _merge(nested[head], value)
        else:
            nested[head] = value
    return nested


def _merge(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def _flat_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in tree.items():
        if isinstance(value, dict):
            keys.extend(_flat_keys(value, f"{prefix}{key}."))
        else:
            keys.append(prefix + key)
    return keys


# -------------------------------------------------------------------------
# semantics: the node tree
# -------------------------------------------------------------------------


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _BOOL_WORDS:
        return _BOOL_WORDS[value]
    raise InvalidOptionError(f"Parameter '{name}' expects 'on' or 'off'")


def _size(name: str, value: Any) -> int:
    from ..options import parse_size  # only trees with raw offset/size need it

    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        try:
            return parse_size(value)
        except ValueError:
            pass
    raise InvalidOptionError(f"Parameter '{name}' expects a non-negative number below 2^64{_SIZE_HELP}")


def build_node(
    tree: Mapping[str, Any],
    *,
    filename: str | None,
    format: str | None,
    known_formats: Mapping[str, Any],
    child: bool = False,
) -> Node:
    """Check *tree* (nested options) and turn it into the node to open.

    :param filename: the image name given beside the options (``open -o ... file``), which becomes the
        ``file`` child of a format node, or the file itself when no driver is named.
    :param format: ``-f``, used when the tree names no driver.
    :param known_formats: the host's formats (``host.formats``).
    :param child: *tree* is a ``file`` child: without a driver it is the ``file`` protocol (QEMU
        probes formats only at the top).
    :raises InvalidOptionError: for unknown options and bad values, with QEMU's messages.
    :raises UnsupportedFormatError: ``Unknown driver '<name>'``.
    """
    options = dict(tree)
    driver = options.pop("driver", None) or format
    if driver is not None and not isinstance(driver, str):
        raise InvalidOptionError("Invalid parameter type for 'driver', expected: string")
    if driver is not None and driver not in (*HOST_PROTOCOLS, BLKDEBUG) and driver not in known_formats:
        raise UnsupportedFormatError(f"Unknown driver '{driver}'")
    if driver == BLKDEBUG or (driver is None and child and _blkdebug_name(options, filename)):
        return _blkdebug_node(options, filename, known_formats)
    if driver in HOST_PROTOCOLS or (driver is None and child):
        return _file_node(options, filename, driver)
    if "filename" in options and driver is not None:
        raise InvalidOptionError('A block device must be specified for "file"')
    own_name = options.pop("filename", None)
    child_tree = options.pop("file", None)
    if isinstance(child_tree, str):
        raise InvalidOptionError(f"Cannot find device='{child_tree}' nor node-name='{child_tree}'")
    if child_tree is None:
        name = filename if filename is not None else own_name
        if name is None:
            if driver is None:
                raise InvalidOptionError("Must specify either driver or file")
            raise InvalidOptionError('A block device must be specified for "file"')
        file = build_node({}, filename=name, format=None, known_formats=known_formats, child=True)
    else:
        file = build_node(child_tree, filename=filename, format=None, known_formats=known_formats, child=True)
    read_only, force_share = _common_flags(options)
    format_options = {key: value for key, value in options.items() if not _is_common(key, value)}
    if driver is not None:
        format_options = check_format_options(driver, format_options)
    return FormatNode(driver, file, format_options, read_only=read_only, force_share=force_share)


def check_format_options(driver: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The runtime options of format *driver*, typed; for a probed format, called once it is known.

    :raises InvalidOptionError: ``Block format '<driver>' does not support the option '<key>'``.
    """
    allowed = FORMAT_OPTIONS.get(driver, frozenset())
    for key in _flat_keys(options):
        if key not in allowed:
            raise InvalidOptionError(f"Block format '{driver}' does not support the option '{key}'")
    return {key: _size(key, value) for key, value in options.items()}


def _blkdebug_name(options: Mapping[str, Any], filename: str | None) -> bool:
    name = options.get("filename", filename)
    return isinstance(name, str) and name.startswith(BLKDEBUG_PREFIX)


def _blkdebug_node(options: dict[str, Any], filename: str | None, known_formats: Mapping[str, Any]) -> Node:
    """blkdebug (``blkdebug:[config]:image`` or ``driver=blkdebug``) without rules passes every
    request through unchanged, so it opens as the node it wraps."""
    name = options.pop("filename", filename)
    image = options.pop("image", None)
    if isinstance(name, str) and name.startswith(BLKDEBUG_PREFIX):
        config, _, name = name[len(BLKDEBUG_PREFIX) :].partition(":")
        options.setdefault("config", config)
    _common_flags(options)
    for key in _flat_keys(options):
        if key.split(".")[0] in BLKDEBUG_RULES:
            raise InvalidOptionError(
                f"blkdebug option '{key}' is not supported: blockfmt cannot inject errors"
            )
        if key not in BLKDEBUG_OPTIONS:
            raise InvalidOptionError(f"Block protocol 'blkdebug' doesn't support the option '{key}'")
    align = options.get("align")
    if align is not None:
        value = _size("align", align)
        if value & (value - 1):
            raise InvalidOptionError(f"Cannot meet constraints with align {value}")
    _check_blkdebug_config(options.get("config") or "")
    if isinstance(image, str):
        raise InvalidOptionError(f"Cannot find device='{image}' nor node-name='{image}'")
    if image is None:
        if not name:
            raise InvalidOptionError('A block device must be specified for "image"')
        image = {}
    return build_node(image, filename=name or None, format=None, known_formats=known_formats, child=True)


def _check_blkdebug_config(path: str) -> None:
    """A blkdebug config file holds rules; an empty one (or none) is the only kind that works here."""
    if not path:
        return
    try:
        with open(path, encoding="utf-8", errors="replace") as config:
            text = config.read()
    except OSError as err:
        raise InvalidOptionError(
            f"Could not read blkdebug config file: {os.strerror(err.errno or 0)}"
        ) from err
    if any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()):
        raise InvalidOptionError(
            "blkdebug config files with rules are not supported: blockfmt cannot inject errors"
        )


def _file_node(options: dict[str, Any], filename: str | None, driver: str | None) -> FileNode:
    """A host file node; *driver* None means QEMU's protocol probing, which picks ``file`` for
    regular files and ``host_device`` for devices."""
    name = options.pop("filename", None)
    name = name if name is not None else filename
    read_only, force_share = _common_flags(options)
    locking = options.pop("locking", "auto")
    for key in _flat_keys(options):
        if key not in FILE_OPTIONS and key not in COMMON_OPTIONS:
            raise InvalidOptionError(
                f"Block protocol '{driver or PROTOCOL_FILE}' doesn't support the option '{key}'"
            )
    if locking not in ("on", "off", "auto", True, False):
        raise InvalidOptionError(f"invalid parameter value: {locking}")
    if name is None:
        raise InvalidOptionError(f"The '{driver or PROTOCOL_FILE}' block driver requires a file name")
    return FileNode(str(name), locking not in ("off", False), read_only, force_share, driver)


def _is_common(key: str, value: Any) -> bool:
    if isinstance(value, dict):
        return all(f"{key}.{sub}" in COMMON_OPTIONS for sub in _flat_keys(value))
    return key in COMMON_OPTIONS


def _common_flags(options: dict[str, Any]) -> tuple[bool, bool]:
    """Pop and return ``read-only`` and ``force-share``; the other common options need no action."""
    read_only = _bool("read-only", options.pop("read-only", False))
    force_share = _bool("force-share", options.pop("force-share", False))
    for key in [k for k, v in options.items() if _is_common(k, v)]:
        del options[key]
    return read_only, force_share
