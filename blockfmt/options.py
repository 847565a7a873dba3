"""QEMU's option syntax: sizes with suffixes, ``-o key=value,...`` lists, typed option values.

Messages are qemu-img 7.2's own, so the CLI can print them unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .driver import CreateOption, FormatSpec
from .errors import InvalidOptionError
from .records import FrozenRecord

__all__ = [
    "SIZE_SUFFIX_HELP",
    "CreateOptions",
    "check_open_options",
    "coerce_create_options",
    "parse_option_list",
    "parse_size",
]

_SUFFIXES = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "M": 1 << 20,
    "G": 1 << 30,
    "T": 1 << 40,
    "P": 1 << 50,
    "E": 1 << 60,
}
#: compiled by :mod:`re` (and cached there) on first use, not on every start
_SIZE_RE = r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([bBkKmMgGtTpPeE]?)\s*"
_SIZE_LIMIT = 1 << 64

SIZE_SUFFIX_HELP = (
    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively."
)


def parse_size(text: str) -> int:
    """Parse a QEMU size (``64M``, ``1.5G``, ``4096``) into bytes.

    :raises ValueError: when *text* is not a size (callers attach the context-specific message).
    """
    match = re.fullmatch(_SIZE_RE, text)
    if not match:
        raise ValueError(text)
    number, suffix = match.groups()
    unit = _SUFFIXES[suffix.upper()]
    if "." in number:
        if unit == 1:
            raise ValueError(text)  # QEMU refuses fractions of a byte
        whole, _, frac = number.partition(".")
        value = int(whole or "0") * unit + (int(frac or "0") * unit) // (10 ** len(frac))
    else:
        value = int(number) * unit
    if value >= _SIZE_LIMIT:
        raise ValueError(text)
    return value


def parse_option_list(text: str) -> list[tuple[str, str]]:
    """Split ``key=value,key2=value2`` (``,,`` is a literal comma) into pairs, in order.

    A key without ``=`` means ``key=on``, as in QEMU's ``qemu_opts_parse`` (``-o static``).
    """
    pairs: list[tuple[str, str]] = []
    for item in re.split(r"(?<!,),(?!,)", text):
        if not item:
            continue
        item = item.replace(",,", ",")
        key, sep, value = item.partition("=")
        pairs.append((key, value if sep else "on"))
    return pairs


def _coerce(option: CreateOption, value: Any) -> Any:
    if option.type == "size":
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise InvalidOptionError(
                    f"Parameter '{option.name}' expects a non-negative number below 2^64\n{SIZE_SUFFIX_HELP}"
                )
            return value
        try:
            return parse_size(str(value))
        except ValueError:
            raise InvalidOptionError(
                f"Parameter '{option.name}' expects a non-negative number below 2^64\n{SIZE_SUFFIX_HELP}"
            ) from None
    if option.type == "bool":
        if isinstance(value, bool):
            return value
        if value in ("on", "off"):
            return value == "on"
        raise InvalidOptionError(f"Parameter '{option.name}' expects 'on' or 'off'")
    if option.type == "number":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InvalidOptionError(f"Parameter '{option.name}' expects a number") from None
    return str(value)


class CreateOptions(FrozenRecord):
    """A format's create options, typed once.

    The CLI needs them typed before it creates anything (to refuse a bad value first, and for
    qemu-img's ``Formatting ...`` line); :func:`blockfmt.create` takes this object as it is, so
    nothing is parsed twice and the two can never disagree.

    :ivar values: every option of the format by its qemu-img name, typed; defaults filled in
        unless they were typed for QMP's ``blockdev-create``; ``None`` where unset.
    :ivar given: the names the caller set (a differencing child inherits the others from its parent).
    """

    _fields = ("values", "given")
    __slots__ = _fields
    values: Mapping[str, Any]
    given: frozenset[str]

    def __init__(self, values: Mapping[str, Any], given: frozenset[str]) -> None:
        self._fill(values, given)


def check_open_options(spec: FormatSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    """The open *options* for a *spec* format, checked against what it declares.

    :raises InvalidOptionError: for an unknown key (QEMU's text) or a value it does not accept.
    """
    declared = {option.name: option for option in spec.open_options}
    for key, value in options.items():
        option = declared.get(key)
        if option is None:
            raise InvalidOptionError(f"Invalid parameter '{key}'")
        if value not in option.choices:
            raise InvalidOptionError(f"Parameter '{key}' expects {' or '.join(map(repr, option.choices))}")
    return dict(options)


def coerce_create_options(
    spec: FormatSpec, given: Mapping[str, Any] | Iterable[tuple[str, Any]], *, fill_defaults: bool = True
) -> CreateOptions:
    """Turn user-supplied create options into typed values, filling defaults.

    Keys may use the ``-o`` spelling (``log_size``) or the QMP one (``log-size``).

    :param fill_defaults: give absent options their defaults (qemu-img); when False they stay None
        (QMP ``blockdev-create``, where an absent key means "not given").
    :returns: every option of *spec*, typed; ``None`` where unset and without default.
    :raises InvalidOptionError: for unknown keys or badly typed values (qemu-img's messages).
    """
    by_name: dict[str, CreateOption] = {}
    for option in spec.create_options:
        by_name[option.name] = option
        if option.blockdev_name:
            by_name[option.blockdev_name] = option
    items = given.items() if isinstance(given, Mapping) else given
    result: dict[str, Any] = {
        o.name: (_coerce(o, o.default) if fill_defaults and o.default is not None else None)
        for o in spec.create_options
    }
    named: set[str] = set()
    for key, value in items:
        option = by_name.get(key)
        if option is None:
            raise InvalidOptionError(f"Invalid parameter '{key}'")
        result[option.name] = _coerce(option, value)
        named.add(option.name)
    return CreateOptions(result, frozenset(named))
