"""Command-line parsing the way QEMU's tools do it: GNU getopt, QEMU number syntax.

qemu-img and qemu-io parse with glibc's ``getopt_long``: options may follow operands (the
operands keep their order), ``--`` ends the options, a long option may be shortened to any
unambiguous prefix, and problems are reported in glibc's words. :mod:`argparse` words and orders
them differently and :func:`getopt.gnu_getopt` copies the remaining arguments at every option
(quadratic: a qemu-io command line with 10,000 ``-c`` commands took a second to parse), so
:func:`getopt_long` here does the same job in one pass.
"""

from __future__ import annotations

import enum
import functools
import os
import re
from collections.abc import Sequence

from ..options import parse_size
from .report import UsageError

__all__ = ["NumberError", "OptionError", "cvtnum", "getopt_long", "gnu_getopt", "parse_pattern"]

#: qemu_strtosz's limit: results must stay below 2^64
_STRTOSZ_LIMIT = 1 << 64
INT64_MAX = (1 << 63) - 1
# patterns, compiled by :mod:`re` (and cached there) on first use: a command line without numbers
# does not pay for them
_HEX = r"\s*0[xX]([0-9a-fA-F]+)"
#: what a well-formed size looks like, so that oversized values are told apart from garbage
_SIZE_SHAPE = r"\s*(\d+(?:\.\d*)?|\.\d+)\s*[bBkKmMgGtTpPeE]?\s*"
_STRTOL = r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)"
UCHAR_MAX = 0xFF


class OptionError(Exception):
    """A command line ``getopt_long`` refuses; ``str()`` is glibc's message without ``argv[0]: ``.

    :ivar argument: the option as the command line gave it (``-x``, ``--foo=bar``), which qemu-img
        quotes in its own messages instead of glibc's.
    :ivar missing: True when only the option's argument is missing.
    """

    def __init__(self, message: str, argument: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.argument = argument
        self.missing = missing


class _OptionTable:
    """An option specification, decoded once: ``getopt_long``'s optstring and ``struct option``s.

    A plain class (not a dataclass): it is defined on every start and never compared or printed.
    """

    __slots__ = ("in_order", "long", "short")
    #: short option letter -> whether it takes an argument
    short: dict[str, bool]
    #: long option name -> whether it takes an argument, in the order given (ambiguity lists use it)
    long: dict[str, bool]
    #: optstring ``+``: the first operand ends the options (no permutation)
    in_order: bool

    def __init__(self, short: dict[str, bool], long: dict[str, bool], in_order: bool) -> None:
        self.short = short
        self.long = long
        self.in_order = in_order


@functools.lru_cache(maxsize=64)
def _option_table(shortopts: str, longopts: tuple[str, ...]) -> _OptionTable:
    in_order = shortopts.startswith("+")
    letters = shortopts.lstrip("+:")
    short = {}
    for index, letter in enumerate(letters):
        if letter != ":":
            short[letter] = letters[index + 1 : index + 2] == ":"
    long = {name.removesuffix("="): name.endswith("=") for name in longopts}
    return _OptionTable(short, long, in_order)


def getopt_long(
    args: Sequence[str], shortopts: str, longopts: Sequence[str] = ()
) -> tuple[list[tuple[str, str]], list[str]]:
    """glibc's ``getopt_long`` over *args* (without the program name), in one pass.

    *shortopts* is an optstring (``"hc:f:"``; a leading ``+`` stops at the first operand, as does
    ``POSIXLY_CORRECT`` in the environment), *longopts* names long options, ``name=`` for those
    taking an argument. Options come back in order as ``("-c", value)`` / ``("--cmd", value)``
    pairs (full names even when abbreviated, ``""`` for no argument), operands in their order.

    :raises OptionError: with glibc's message for an unknown, ambiguous or malformed option.
    """
    table = _option_table(shortopts, tuple(longopts))
    pairs: list[tuple[str, str]] = []
    operands: list[str] = []
    index, count = 0, len(args)
    first_operand = -1
    while index < count:
        arg = args[index]
        index += 1
        if arg[:1] != "-" or arg == "-":
            if table.in_order:
                operands.extend(args[index - 1 :])
                break
            if first_operand < 0:
                first_operand = index - 1
            operands.append(arg)
        elif arg == "--":
            operands.extend(args[index:])
            break
        elif first_operand >= 0 and _posixly_correct():
            # an option after an operand: only now does the environment matter (looking it up
            # costs more than parsing a whole qemu-io command without options)
            return pairs, list(args[first_operand:])
        elif arg[1] == "-":
            index = _long_option(table, arg, args, index, pairs)
        elif len(arg) == 2 and table.short.get(arg[1]) and index < count:
            pairs.append((arg, args[index]))  # ``-c STRING``, the common case, without a call
            index += 1
        else:
            index = _short_options(table, arg, args, index, pairs)
    return pairs, operands


def _posixly_correct() -> bool:
    """glibc's ``POSIXLY_CORRECT``: options end at the first operand, as with optstring ``+``."""
    return "POSIXLY_CORRECT" in os.environ


def _long_option(
    table: _OptionTable, arg: str, args: Sequence[str], index: int, pairs: list[tuple[str, str]]
) -> int:
    """One ``--name[=value]`` into *pairs*; returns the index of the next argument."""
    given, equals, value = arg[2:].partition("=")
    if given in table.long:
        name = given
    else:
        candidates = [name for name in table.long if name.startswith(given)]
        if not candidates:
            raise OptionError(f"unrecognized option '{arg}'", arg)
        if len(candidates) > 1:
            possibilities = "".join(f" '--{name}'" for name in candidates)
            raise OptionError(f"option '{arg}' is ambiguous; possibilities:{possibilities}", arg)
        name = candidates[0]
    if not table.long[name]:
        if equals:
            raise OptionError(f"option '--{name}' doesn't allow an argument", arg)
        pairs.append((f"--{name}", ""))
        return index
    if not equals:
        if index == len(args):
            raise OptionError(f"option '--{name}' requires an argument", arg, missing=True)
        value = args[index]
        index += 1
    pairs.append((f"--{name}", value))
    return index


def _short_options(
    table: _OptionTable, arg: str, args: Sequence[str], index: int, pairs: list[tuple[str, str]]
) -> int:
    """A cluster of short options (``-rU``, ``-fvhdx``) into *pairs*; returns the next index."""
    for position in range(1, len(arg)):
        letter = arg[position]
        takes_argument = table.short.get(letter)
        if takes_argument is None:
            raise OptionError(f"invalid option -- '{letter}'", f"-{letter}")
        if takes_argument:
            value = arg[position + 1 :]
            if not value:
                if index == len(args):
                    raise OptionError(
                        f"option requires an argument -- '{letter}'", f"-{letter}", missing=True
                    )
                value = args[index]
                index += 1
            pairs.append((f"-{letter}", value))
            return index
        pairs.append((f"-{letter}", ""))
    return index


def gnu_getopt(
    args: Sequence[str], shortopts: str, longopts: Sequence[str] = ()
) -> tuple[list[tuple[str, str]], list[str]]:
    """:func:`getopt_long` with qemu-img's error texts (``unrecognized option '-x'``, ...), which
    it prints itself instead of glibc's.

    :raises UsageError: for an unknown option or a missing argument.
    """
    try:
        return getopt_long(args, shortopts, longopts)
    except OptionError as err:
        if err.missing:
            raise UsageError(f"missing argument for option '{err.argument}'") from None
        raise UsageError(f"unrecognized option '{err.argument}'") from None


class NumberError(enum.Enum):
    """Why ``qemu_strtosz`` refused a number (its ``-EINVAL`` / ``-ERANGE``)."""

    INVALID = "invalid"
    RANGE = "range"


def cvtnum(text: str, limit: int = INT64_MAX) -> int | NumberError:
    """Parse a QEMU size (``4096``, ``64k``, ``1.5G``, ``0x1000``); sizes in bytes.

    :returns: the value, or why it was refused (values above *limit* are out of range).
    """
    if text.isdigit() and text.isascii():  # plain bytes, the common case: no pattern, no cache
        value = int(text)
        return NumberError.RANGE if value >= _STRTOSZ_LIMIT or value > limit else value
    return _cvtnum_patterned(text, limit)


@functools.lru_cache(maxsize=256)
def _cvtnum_patterned(text: str, limit: int) -> int | NumberError:
    """:func:`cvtnum` of a number with a suffix, a fraction or in hex. Cached: qemu-io scripts
    repeat the same few of those (``64k``, ``1M``) thousands of times."""
    if hex_match := re.fullmatch(_HEX, text):
        value = int(hex_match.group(1), 16)
    else:
        try:
            value = parse_size(text)
        except ValueError:
            return (
                NumberError.RANGE
                if re.fullmatch(_SIZE_SHAPE, text) and "." not in text
                else NumberError.INVALID
            )
    if value >= _STRTOSZ_LIMIT or value > limit:
        return NumberError.RANGE
    return value


@functools.lru_cache(maxsize=64)
def parse_pattern(text: str) -> int | None:
    """A pattern byte as C's ``strtol(text, &end, 0)`` reads it (``0xa5``, ``0245``, ``165``).

    Cached: a script gives the same ``-P`` pattern to thousands of commands.

    :returns: the byte, or None when *text* is not one whole number in 0..255.
    """
    if not text:
        return 0  # strtol consumes nothing and qemu-io sees an empty remainder: pattern 0
    match = re.fullmatch(_STRTOL, text)
    if not match:
        return None
    sign, digits = match.groups()
    base = 16 if digits[:2].lower() == "0x" else 8 if digits.startswith("0") and len(digits) > 1 else 10
    value = int(digits, base) * (-1 if sign == "-" else 1)
    return value if 0 <= value <= UCHAR_MAX else None
