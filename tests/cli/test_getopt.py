"""The one-pass ``getopt_long`` of :mod:`blockfmt.cli.args`: glibc's rules and words, checked
directly and against the real qemu-io, whose command line and commands glibc parses."""

from __future__ import annotations

import pytest

from blockfmt.cli.args import OptionError, getopt_long

from .conftest import Twins

QEMU_IO_SHORT = "hVc:d:f:rsnCmkt:i:T:U"
QEMU_IO_LONG = ("help", "cmd=", "copy-on-read", "cache=", "nocache", "native-aio", "format=", "force-share")


def test_operands_keep_their_order_around_permuted_options() -> None:
    pairs, operands = getopt_long(["a", "-c", "x", "b", "-rU", "--cmd=y", "c"], QEMU_IO_SHORT, QEMU_IO_LONG)
    assert pairs == [("-c", "x"), ("-r", ""), ("-U", ""), ("--cmd", "y")]
    assert operands == ["a", "b", "c"]


def test_double_dash_ends_the_options_and_a_lone_dash_is_an_operand() -> None:
    pairs, operands = getopt_long(["-", "-fraw", "--", "-c", "--cmd"], QEMU_IO_SHORT, QEMU_IO_LONG)
    assert pairs == [("-f", "raw")]
    assert operands == ["-", "-c", "--cmd"]


def test_an_argument_is_taken_whatever_it_looks_like() -> None:
    pairs, operands = getopt_long(["-c", "-r", "--cache", "--", "x"], QEMU_IO_SHORT, QEMU_IO_LONG)
    assert pairs == [("-c", "-r"), ("--cache", "--")]
    assert operands == ["x"]


def test_a_unique_prefix_names_the_long_option_and_an_exact_name_wins() -> None:
    pairs, _ = getopt_long(["--ca", "none", "--he", "--cmd", "z"], QEMU_IO_SHORT, (*QEMU_IO_LONG, "cmdline"))
    assert pairs == [("--cache", "none"), ("--help", ""), ("--cmd", "z")]


@pytest.mark.parametrize(
    ("args", "message", "argument", "missing"),
    [
        (["-x"], "invalid option -- 'x'", "-x", False),
        (["-rqx"], "invalid option -- 'q'", "-q", False),
        (["-c"], "option requires an argument -- 'c'", "-c", True),
        (["--foo=bar"], "unrecognized option '--foo=bar'", "--foo=bar", False),
        (
            ["--c"],
            "option '--c' is ambiguous; possibilities: '--cmd' '--copy-on-read' '--cache'",
            "--c",
            False,
        ),
        (["--n=1"], "option '--n=1' is ambiguous; possibilities: '--nocache' '--native-aio'", "--n=1", False),
        (["--he=1"], "option '--help' doesn't allow an argument", "--he=1", False),
        (["--form"], "option '--format' requires an argument", "--form", True),
    ],
)
def test_refusals_in_glibc_words(args: list[str], message: str, argument: str, missing: bool) -> None:
    with pytest.raises(OptionError) as caught:
        getopt_long(["x", *args], QEMU_IO_SHORT, QEMU_IO_LONG)
    assert str(caught.value) == message
    assert (caught.value.argument, caught.value.missing) == (argument, missing)


def test_plus_and_posixly_correct_stop_at_the_first_operand(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["-r", "file", "-c", "x"]
    assert getopt_long(args, "+" + QEMU_IO_SHORT) == ([("-r", "")], ["file", "-c", "x"])
    monkeypatch.delenv("POSIXLY_CORRECT", raising=False)
    assert getopt_long(args, QEMU_IO_SHORT) == ([("-r", ""), ("-c", "x")], ["file"])
    monkeypatch.setenv("POSIXLY_CORRECT", "1")
    assert getopt_long(args, QEMU_IO_SHORT) == ([("-r", "")], ["file", "-c", "x"])
    assert getopt_long(["-f", "raw", "raw", "-r"], QEMU_IO_SHORT) == ([("-f", "raw")], ["raw", "-r"])


def test_ten_thousand_commands_come_back_in_order() -> None:
    """The case that was quadratic: every ``-c`` kept, in order, between the other options."""
    args = ["-f", "raw"] + [arg for i in range(10_000) for arg in ("-c", f"read {i} 1")] + ["t.raw", "-r"]
    pairs, operands = getopt_long(args, QEMU_IO_SHORT, QEMU_IO_LONG)
    assert [value for opt, value in pairs if opt == "-c"] == [f"read {i} 1" for i in range(10_000)]
    assert pairs[0] == ("-f", "raw") and pairs[-1] == ("-r", "")
    assert operands == ["t.raw"]


@pytest.mark.qemu
@pytest.mark.parametrize(
    "args",
    [
        ["--c", "x"],
        ["--n"],
        ["--f=raw"],
        ["--help=x"],
        ["--foo=bar"],
        ["--nocache=1"],
        ["-c"],
        ["-f", "raw", "t.raw", "--", "-c", "length"],
        ["-f", "raw", "-c", "length", "--", "t.raw"],
        ["--fo", "raw", "--cm=length", "t.raw"],
        ["--form", "raw", "--c=length", "t.raw"],
        ["t.raw", "-f", "raw", "-c", "read -P 0x11 1M 4k -q", "-c", "read -- -q 0"],
        ["-f", "raw", "-c", "read -xq 0 1", "-c", "read -q -P", "-c", "write -P 1 -q 0 1 -z", "t.raw"],
        [
            "-f",
            "raw",
            "-c",
            "readv -v -P 0x11 1M 16 16",
            "-c",
            "writev -qP 3 0 3 4",
            "-c",
            "read -P 3 0 7",
            "t.raw",
        ],
    ],
    ids=lambda args: " ".join(args),
)
def test_command_lines_parse_like_qemu_io(twins: Twins, args: list[str]) -> None:
    theirs, ours = twins.both("io", args)
    assert ours == theirs


@pytest.mark.qemu
def test_posixly_correct_stops_qemu_io_and_its_commands_alike(
    twins: Twins, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSIXLY_CORRECT", "1")
    for args in (["-f", "raw", "-c", "read 0 512 -q", "t.raw"], ["-f", "raw", "t.raw", "-c", "length"]):
        theirs, ours = twins.both("io", args)
        assert ours == theirs
