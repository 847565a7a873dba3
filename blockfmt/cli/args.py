"""Command-line parsing the way QEMU's tools do it: GNU getopt, QEMU number syntax.

qemu-img and qemu-io parse with ``getopt_long`` (options may follow operands) and report
problems in their own words; :mod:`argparse` would word and order them differently, so this
module wraps :func:`getopt.gnu_getopt` and translates its errors into QEMU's texts.
"""

from __future__ import annotations

import enum
import getopt
import re
from collections.abc import Sequence

from ..options import parse_size
from .report import UsageError

__all__ = ["NumberError", "cvtnum", "glibc_getopt_message", "gnu_getopt", "parse_pattern"]

#: qemu_strtosz's limit: results must stay below 2^64
_STRTOSZ_LIMIT = 1 << 64
INT64_MAX = (1 << 63) - 1
_HEX = re.compile(r"\s*0[xX]([0-9a-fA-F]+)")
#: what a well-formed size looks like, so that oversized values are told apart from garbage
_SIZE_SHAPE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*[bBkKmMgGtTpPeE]?\s*")
_STRTOL = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
UCHAR_MAX = 0xFF


def gnu_getopt(
    args: Sequence[str], shortopts: str, longopts: Sequence[str] = ()
) -> tuple[list[tuple[str, str]], list[str]]:
    """``getopt_long`` with QEMU's error texts (``unrecognized option '-x'``, ...).

    :raises UsageError: for an unknown option or a missing argument.
    """
    try:
        return getopt.gnu_getopt(list(args), shortopts, list(longopts))
    except getopt.GetoptError as err:
        dashes = "--" if len(err.opt) > 1 else "-"
        if "requires argument" in err.msg:
            raise UsageError(f"missing argument for option '{dashes}{err.opt}'") from None
        raise UsageError(f"unrecognized option '{dashes}{err.opt}'") from None


def glibc_getopt_message(err: getopt.GetoptError) -> str:
    """What glibc's ``getopt`` itself prints (qemu-io leaves the wording to it), without ``argv[0]: ``."""
    if len(err.opt) > 1:
        if "requires argument" in err.msg:
            return f"option '--{err.opt}' requires an argument"
        return f"unrecognized option '--{err.opt}'"
    if "requires argument" in err.msg:
        return f"option requires an argument -- '{err.opt}'"
    return f"invalid option -- '{err.opt}'"


class NumberError(enum.Enum):
    """Why ``qemu_strtosz`` refused a number (its ``-EINVAL`` / ``-ERANGE``)."""

    INVALID = "invalid"
    RANGE = "range"


def cvtnum(text: str, limit: int = INT64_MAX) -> int | NumberError:
    """Parse a QEMU size (``4096``, ``64k``, ``1.5G``, ``0x1000``); sizes in bytes.

    :returns: the value, or why it was refused (values above *limit* are out of range).
    """
    hex_match = _HEX.fullmatch(text)
    if hex_match:
        value = int(hex_match.group(1), 16)
    else:
        try:
            value = parse_size(text)
        except ValueError:
            return (
                NumberError.RANGE if _SIZE_SHAPE.fullmatch(text) and "." not in text else NumberError.INVALID
            )
    if value >= _STRTOSZ_LIMIT or value > limit:
        return NumberError.RANGE
    return value


def parse_pattern(text: str) -> int | None:
    """A pattern byte as C's ``strtol(text, &end, 0)`` reads it (``0xa5``, ``0245``, ``165``).

    :returns: the byte, or None when *text* is not one whole number in 0..255.
    """
    if not text:
        return 0  # strtol consumes nothing and qemu-io sees an empty remainder: pattern 0
    match = _STRTOL.fullmatch(text)
    if not match:
        return None
    sign, digits = match.groups()
    base = 16 if digits[:2].lower() == "0x" else 8 if digits.startswith("0") and len(digits) > 1 else 10
    value = int(digits, base) * (-1 if sign == "-" else 1)
    return value if 0 <= value <= UCHAR_MAX else None
