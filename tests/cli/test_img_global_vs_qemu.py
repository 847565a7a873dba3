"""blockfmt-img's global options and ``--object`` checks against the real qemu-img."""

from __future__ import annotations

import pytest

from .conftest import Twins

pytestmark = pytest.mark.qemu

CASES = [
    ["-x"],
    ["--foo"],
    ["-T"],
    ["-T", "nosuchevent", "info", "t.raw"],
    ["-T", "enable=nosuchevent,file=trace.log", "info", "t.raw"],
    ["-T", "events=missing-events", "info", "t.raw"],
    ["--trace", "nomatch*", "info", "t.raw"],
    ["info", "-T", "none", "t.raw"],
    ["check", "-T", "bogus", "t.raw"],
    ["compare", "-T", "none", "t.raw", "t.raw"],
    ["info", "--object", "secret,id=sec0,data=123456", "t.raw"],
    ["info", "--object", "secret,id=s,data=MTIz,format=base64", "t.raw"],
    ["info", "--object", "secret,id=s,data=%%%,format=base64", "t.raw"],
    ["info", "--object", "foo,id=x", "t.raw"],
    ["info", "--object", "secret,data=1", "t.raw"],
    ["info", "--object", "secret,id=s", "t.raw"],
    ["info", "--object", "secret,id=1a,data=1", "t.raw"],
    ["info", "--object", "secret,id=s,data=1,bogus=2", "t.raw"],
    ["info", "--object", "secret,id=s,data=1,format=hex", "t.raw"],
    ["info", "--object", "secret,id=s,file=missing", "t.raw"],
    ["info", "--object", "secret,id=s,data=1,file=t.raw", "t.raw"],
    ["info", "--object", "", "t.raw"],
    ["info", "--object", "help", "t.raw"],
    ["info", "--object", "secret,help", "t.raw"],
    ["check", "--object", "throttle-group,id=t", "t.raw"],
    ["map", "--start-offset=1M", "--max-length=2M", "--output=json", "t.raw"],
    ["map", "--start-offset=100M", "--output=json", "t.raw"],
    ["map", "--start-offset=1000", "--max-length", "3000", "--output=json", "t.raw"],
    ["map", "--start-offset=x", "t.raw"],
    ["info", "--image-opts", "driver=raw,file.filename=t.raw"],
    ["info", "-f", "raw", "--image-opts", "driver=raw,file.filename=t.raw"],
    ["check", "--image-opts", "driver=raw,file.driver=file,file.filename=t.raw"],
    ["info", "--output=json", 'json:{"driver":"raw","file":{"driver":"file","filename":"t.raw"}}'],
    ["compare", "--image-opts", "driver=raw,file.filename=t.raw", "driver=raw,file.filename=u.raw"],
    ["snapshot", "-l", "--image-opts", "driver=raw,file.filename=t.raw"],
    ["measure", "-O", "raw", "--image-opts", "driver=raw,file.filename=big.raw"],
    ["info", "--image-opts", "driver=raw,file.filename=missing.raw"],
    ["map", "--max-length=-1", "t.raw"],
]


@pytest.mark.parametrize("args", CASES, ids=" ".join)
def test_global_options_match_qemu_img(twins: Twins, args: list[str]) -> None:
    """Same stdout, stderr and exit code as qemu-img."""
    theirs, ours = twins.both("img", args)
    assert ours == theirs


@pytest.mark.parametrize(
    "args", [["-h"], ["--help"], ["info", "-h"], ["convert", "--help", "x"]], ids=" ".join
)
def test_help_matches_qemu_img_but_for_version_and_formats(twins: Twins, args: list[str]) -> None:
    """The help text is qemu-img's; only the version line and the list of formats are blockfmt's."""
    theirs, ours = twins.both("img", args)
    assert ours.code == theirs.code == 0

    def comparable(text: str) -> list[str]:
        lines = text.splitlines()[1:]
        return [line for line in lines if not line.startswith("Supported formats:")]

    assert comparable(ours.stdout) == comparable(theirs.stdout)
    formats = next(line for line in ours.stdout.splitlines() if line.startswith("Supported formats:"))
    assert {"raw", "vdi", "vhdx"} <= set(formats.split()[2:])


def test_version_names_program_and_blockfmt(twins: Twins) -> None:
    """``-V`` prints two lines like qemu-img's, the first naming blockfmt."""
    theirs, ours = twins.both("img", ["-V"])
    assert ours.code == theirs.code == 0
    first, copyright_line = ours.stdout.splitlines()
    assert first.startswith("qemu-img version 7.2.") and "blockfmt" in first
    assert copyright_line == theirs.stdout.splitlines()[1]
