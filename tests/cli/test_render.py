"""qemu-img/qemu-io texts that live runs rarely reach: key orders, unit switches, check summaries."""

from __future__ import annotations

import pytest

from blockfmt.cli import render
from blockfmt.cli.args import NumberError, cvtnum, parse_pattern
from blockfmt.driver import CheckResult, CreateOption, Extent, FormatSpec


def test_qdict_order_reproduces_qemu_info_and_check_json() -> None:
    """Key orders observed from qemu-img 7.2 info and check --output=json."""
    info = ["filename", "format", "dirty-flag", "actual-size", "virtual-size", "cluster-size"]
    assert render.qdict_order(info) == [
        "virtual-size",
        "filename",
        "cluster-size",
        "format",
        "actual-size",
        "dirty-flag",
    ]
    check = ["filename", "format", "check-errors", "image-end-offset", "total-clusters"]
    assert render.qdict_order(check) == [
        "image-end-offset",
        "total-clusters",
        "check-errors",
        "filename",
        "format",
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 B"),
        (4096, "4 KiB"),
        (1265664, "1.21 MiB"),
        (1000 * 1024, "0.977 MiB"),
        (999 * 1024, "999 KiB"),
        (1 << 30, "1 GiB"),
        (10 << 40, "10 TiB"),
    ],
)
def test_size_to_str(value: int, text: str) -> None:
    """Three significant digits; the unit switches at 1000 of the smaller one."""
    assert render.size_to_str(value) == text


def test_io_report_units_and_times() -> None:
    """cvtstr drops .000, keeps other decimals; times above a second use H:MM:SS.ss."""
    report = render.io_report("read", 0, 1536, 1536, 1, 500_000_000)
    assert report == (
        "read 1536/1536 bytes at offset 0\n1.500 KiB, 1 ops; 00.50 sec (3 KiB/sec and 2.0000 ops/sec)\n"
    )
    slow = render.io_report("wrote", 512, 512, 512, 1, 61_250_000_000)
    assert slow.splitlines()[1].startswith("512 bytes, 1 ops; 0:01:01.25 (8.359")
    assert "inf" in render.io_report("read", 0, 1, 1, 1, 0)


def test_dump_buffer_shows_only_alphanumerics() -> None:
    """read -v: punctuation and spaces print as dots, as qemu-io's isalnum() test does."""
    assert render.dump_buffer(b"Ab1 .-\xff", 0x10) == "00000010:  41 62 31 20 2e 2d ff  Ab1....\n"


SPEC = FormatSpec(
    "demo",
    "demo",
    (
        CreateOption("size", "size", "Virtual disk size"),
        CreateOption("mode", "string", "Mode", default="fast"),
        CreateOption("a_very_long_option_name", "bool", "Long one"),
        CreateOption("count", "number", "How many"),
    ),
)


def test_option_help_sorts_and_pads_like_qemu() -> None:
    """Lines sorted as strings; short ones padded to column 24, long ones not."""
    assert render.option_help(SPEC) == (
        "Supported demo options:\n"
        "  a_very_long_option_name=<bool (on/off)> - Long one\n"
        "  count=<num>            - How many\n"
        "  mode=<str>             - Mode\n"
        "  size=<size>            - Virtual disk size\n"
        "\nThe protocol level may support further options.\n"
        "Specify the target filename to include those options.\n"
    )


def test_formatting_line_prints_given_and_defaulted_options_in_spec_order() -> None:
    """Unset options without default are left out; bools print on/off."""
    values = {"size": 1024, "mode": "fast", "a_very_long_option_name": False, "count": None}
    assert render.formatting_line("x", SPEC, values, {"size", "a_very_long_option_name"}) == (
        "Formatting 'x', fmt=demo size=1024 mode=fast a_very_long_option_name=off\n"
    )


def test_check_human_reports_every_problem_kind() -> None:
    """Corruptions, leaks, internal errors, the allocation line and the end offset."""
    result = CheckResult(
        corruptions=2,
        leaks=3,
        check_errors=1,
        image_end_offset=4096,
        total_clusters=8,
        allocated_clusters=4,
        fragmented_clusters=1,
    )
    assert render.check_human(result) == (
        "\n2 errors were found on the image.\n"
        "Data may be corrupted, or further writes to the image may corrupt it.\n"
        "\n3 leaked clusters were found on the image.\n"
        "This means waste of disk space, but no harm to data.\n"
        "\n1 internal errors have occurred during the check.\n"
        "4/8 = 50.00% allocated, 25.00% fragmented, 0.00% compressed clusters\n"
        "Image end offset: 4096\n"
    )


def test_check_json_leaves_out_zero_members() -> None:
    """Only check-errors is always there; the others appear when non-zero."""
    text = render.check_json(CheckResult(leaks=1, leaks_fixed=1), "f", "demo")
    assert text == (
        '{\n    "check-errors": 0,\n    "leaks": 1,\n    "leaks-fixed": 1,\n'
        '    "filename": "f",\n    "format": "demo"\n}\n'
    )


def test_map_human_stops_at_data_without_offset() -> None:
    """qemu-img cannot print a data extent it has no host offset for."""
    rows, complete = render.map_human([Extent(0, 512, True, False, 0), Extent(512, 512, True, False)], "f")
    assert rows == "0               0x200           0               f\n"
    assert complete is False


def test_map_json_of_empty_range_is_one_absent_extent() -> None:
    """qemu-img map of a 0-byte image (or past the end) prints one zero-length extent, not ``[]``."""
    absent = '"length": 0, "depth": 0, "present": false, "zero": false, "data": false}]\n'
    assert render.map_json([]) == '[{ "start": 0, ' + absent
    assert render.map_json([], empty_at=5) == '[{ "start": 5, ' + absent


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4096", 4096),
        ("64k", 65536),
        ("1.5M", 3 << 19),
        ("0x1000", 4096),
        ("1x", NumberError.INVALID),
        ("1.5", NumberError.INVALID),
        ("abc", NumberError.INVALID),
        ("99999999999999999999", NumberError.RANGE),
        ("16E", NumberError.RANGE),
        ("8E", NumberError.RANGE),
    ],
)
def test_cvtnum(text: str, value: int | NumberError) -> None:
    """qemu_strtosz results, values above INT64_MAX out of range."""
    assert cvtnum(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0xa5", 0xA5),
        ("011", 9),
        ("255", 255),
        ("", 0),
        ("256", None),
        ("-1", None),
        ("0x", None),
        ("9z", None),
    ],
)
def test_parse_pattern_reads_like_strtol(text: str, value: int | None) -> None:
    """Base 0 like C's strtol: hex, octal, decimal; out of 0..255 or trailing junk is refused."""
    assert parse_pattern(text) == value
