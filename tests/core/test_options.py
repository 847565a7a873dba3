"""QEMU option syntax: sizes, -o lists, typed create options."""

from __future__ import annotations

import pytest

from blockfmt.driver import CreateOption, FormatSpec
from blockfmt.errors import InvalidOptionError
from blockfmt.options import coerce_create_options, parse_option_list, parse_size

SPEC = FormatSpec(
    "demo",
    "demo format",
    (
        CreateOption("size", "size", "Virtual disk size"),
        CreateOption("log_size", "size", "Log size", default=1 << 20, blockdev_name="log-size"),
        CreateOption("static", "bool", "Static", default=False),
        CreateOption("subformat", "string", "Type"),
    ),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("512", 512),
        ("1k", 1024),
        ("1K", 1024),
        ("64M", 64 << 20),
        ("1.5G", 3 << 29),
        ("2T", 2 << 40),
        ("1P", 1 << 50),
        ("3E", 3 << 60),
        ("10b", 10),
    ],
)
def test_parse_size_accepts_qemu_suffixes(text: str, expected: int) -> None:
    """k/M/G/T/P/E multiply by powers of 1024, fractions allowed with a suffix."""
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "-5", "1Q", "abc", "1.5", "16E", "1 G G"])
def test_parse_size_rejects_non_sizes(text: str) -> None:
    """Negative, unknown suffix, byte fractions and sizes of 2^64 and above are not sizes."""
    with pytest.raises(ValueError):
        parse_size(text)


def test_option_list_keeps_order_and_unescapes_double_commas() -> None:
    """',,' is a literal comma inside a value, and a bare key means key=on, as in QEMU's parser."""
    assert parse_option_list("a=1,b=x,,y,static") == [("a", "1"), ("b", "x,y"), ("static", "on")]


def test_coerce_fills_defaults_and_types_values() -> None:
    """Sizes become ints, on/off become bools, absent options keep their defaults; only the named
    ones count as given (a differencing child inherits the others from its parent)."""
    typed = coerce_create_options(SPEC, [("static", "on"), ("subformat", "fixed")])
    assert typed.values == {
        "size": None,
        "log_size": 1 << 20,
        "static": True,
        "subformat": "fixed",
    }
    assert typed.given == {"static", "subformat"}


def test_coerce_accepts_qmp_spelling() -> None:
    """blockdev-create names (log-size) map onto the -o names."""
    typed = coerce_create_options(SPEC, {"log-size": 8 << 20})
    assert typed.values["log_size"] == 8 << 20
    assert typed.given == {"log_size"}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"foo": "1"}, "Invalid parameter 'foo'"),
        ({"static": "maybe"}, "Parameter 'static' expects 'on' or 'off'"),
        (
            {"log_size": "abc"},
            "Parameter 'log_size' expects a non-negative number below 2^64\n"
            "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
            "and exabytes, respectively.",
        ),
        ({"log_size": -1}, "Parameter 'log_size' expects a non-negative number below 2^64"),
    ],
)
def test_coerce_errors_use_qemu_messages(given: dict[str, object], message: str) -> None:
    """Option errors carry qemu-img's text."""
    with pytest.raises(InvalidOptionError) as info:
        coerce_create_options(SPEC, given)
    assert str(info.value).startswith(message)
