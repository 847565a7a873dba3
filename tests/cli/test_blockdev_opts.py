"""``json:{...}`` filenames, ``--image-opts`` and ``open -o``: parsed and opened as QEMU does.

The syntax tests pin the parsers; the comparison tests open the same option trees with the real
qemu-io and with blockfmt-io on twin VHDX and VDI images and require equal output, exit code and bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from blockfmt.cli.blockdev_opts import (
    FileNode,
    FormatNode,
    build_node,
    parse_json_filename,
    parse_qemu_opts,
)
from blockfmt.errors import InvalidOptionError, UnsupportedFormatError
from blockfmt.testing.qemu import run_tool

from .conftest import Twins

FORMATS = {"raw": None, "vhdx": None, "vdi": None}


def test_json_takes_single_quotes_and_nests_dotted_keys() -> None:
    tree = parse_json_filename(
        "json:{'driver': 'raw', 'file': {\"driver\": 'vhdx'}, 'file.file.filename': 'x'}"
    )
    assert tree == {"driver": "raw", "file": {"driver": "vhdx", "file": {"filename": "x"}}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("json:{'driver':'vhdx'", "Could not parse the JSON options: JSON parse error, premature EOI"),
        ("json:[1]", "Invalid JSON object given"),
        ("json:{'a':1} x", "Could not parse the JSON options: Expecting at most one JSON value"),
        ("json:", "Could not parse the JSON options: Expecting a JSON value"),
        ("json:{'a' 1}", "Could not parse the JSON options: JSON parse error, missing : in object pair"),
        ("json:{'a':1,}", "Could not parse the JSON options: JSON parse error, expecting value"),
        ("json:{1:2}", "Could not parse the JSON options: JSON parse error, key is not a string in object"),
    ],
)
def test_bad_json_is_refused_with_qemus_words(text: str, message: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_json_filename(text)
    assert str(info.value) == message


def test_qemu_opts_escape_commas_and_warn_about_bare_keys() -> None:
    warnings: list[str] = []
    tree = parse_qemu_opts("driver=vhdx,file.filename=a,,b,file.locking=off,ro", warnings.append)
    assert tree == {"driver": "vhdx", "file": {"filename": "a,b", "locking": "off"}, "ro": "on"}
    assert warnings == ["short-form boolean option 'ro' deprecated\nPlease use ro=on instead"]


def test_nodes_stack_formats_and_default_the_child_to_the_file_protocol() -> None:
    tree = parse_qemu_opts("driver=raw,file.driver=vhdx,file.file.filename=x,file.file.locking=off")
    node = build_node(tree, filename=None, format=None, known_formats=FORMATS)
    assert node == FormatNode("raw", FormatNode("vhdx", FileNode("x", locking=False)))
    probed = build_node({}, filename="y", format=None, known_formats=FORMATS)
    assert probed == FormatNode(None, FileNode("y"))


@pytest.mark.parametrize(
    ("tree", "error", "message"),
    [
        ({"driver": "nope", "filename": "x"}, UnsupportedFormatError, "Unknown driver 'nope'"),
        ({}, InvalidOptionError, "Must specify either driver or file"),
        (
            {"driver": "vhdx", "filename": "x"},
            InvalidOptionError,
            'A block device must be specified for "file"',
        ),
        ({"driver": "vhdx", "file": "x"}, InvalidOptionError, "Cannot find device='x' nor node-name='x'"),
        ({"driver": "file"}, InvalidOptionError, "The 'file' block driver requires a file name"),
        (
            {"driver": "vhdx", "foo": 1, "file": {"filename": "x"}},
            InvalidOptionError,
            "Block format 'vhdx' does not support the option 'foo'",
        ),
        (
            {"driver": "vhdx", "file": {"filename": "x", "bar": {"baz": 1}}},
            InvalidOptionError,
            "Block protocol 'file' doesn't support the option 'bar.baz'",
        ),
        (
            {"driver": "vhdx", "file": {"filename": "x", "locking": "maybe"}},
            InvalidOptionError,
            "invalid parameter value: maybe",
        ),
    ],
)
def test_bad_trees_are_refused_with_qemus_words(tree: dict, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        build_node(tree, filename=None, format=None, known_formats=FORMATS)
    assert str(info.value) == message


# -------------------------------------------------------------------------
# side by side with qemu-io
# -------------------------------------------------------------------------

OPEN_CASES = [
    ["-c", "read -P 0x42 0 64k", "json:{'driver':'IMGFMT','file':{'filename':'t.IMGFMT'}}"],
    ["-c", "read -P 0x42 0 64k", "json:{'file':{'driver':'file','filename':'t.IMGFMT','locking':'off'}}"],
    [
        "-c",
        "read -P 0x42 0 64k",
        "json:{'driver':'raw','file':{'driver':'IMGFMT','file':{'filename':'t.IMGFMT'}}}",
    ],
    [
        "-c",
        "write -P 0x17 4k 8k",
        "json:{'driver':'raw','file':{'driver':'IMGFMT','file':{'filename':'t.IMGFMT'}}}",
    ],
    [
        "-c",
        "read -P 0x42 0 512",
        "json:{'driver':'raw','offset':512,'size':1024,'file':{'filename':'t.IMGFMT'}}",
    ],
    ["-c", "read 0 1", "json:{'driver':'raw','offset':1000000000,'file':{'filename':'t.IMGFMT'}}"],
    ["-c", "read 0 1", "json:{'driver':'raw','offset':'x','file':{'filename':'t.IMGFMT'}}"],
    ["-c", "read 0 1", "json:{'driver':'IMGFMT','foo':1,'file':{'filename':'t.IMGFMT'}}"],
    ["-c", "read 0 1", "json:{'driver':'IMGFMT','file':{'filename':'t.IMGFMT','bar':'x'}}"],
    ["-c", "read 0 1", "json:{'driver':'IMGFMT','file':{'filename':'missing.IMGFMT'}}"],
    ["-c", "read 0 1", "json:{'driver':'IMGFMT','read-only':true,'file':{'filename':'t.IMGFMT'}}"],
    ["-r", "-c", "read 0 1", "json:{'driver':'IMGFMT','read-only':true,'file':{'filename':'t.IMGFMT'}}"],
    ["-c", "read 0 1", "json:{'driver':'IMGFMT'"],
    ["-c", "read 0 1", "json:[1]"],
    ["--image-opts", "-c", "read -P 0x42 0 1", "driver=IMGFMT,file.filename=t.IMGFMT,file.locking=off"],
    ["--image-opts", "-c", "read 0 1", "driver=IMGFMT,file.filename=t.IMGFMT,zzz"],
    ["--image-opts", "-c", "read 0 1", "driver=IMGFMT,file.filename=t.IMGFMT,file.locking=maybe"],
    ["--image-opts", "-f", "IMGFMT", "-c", "read 0 1", "driver=IMGFMT,file.filename=t.IMGFMT"],
    ["--image-opts", "-c", "read 0 1", "t.IMGFMT"],
    ["-c", "open -o driver=IMGFMT,file.locking=off t.IMGFMT", "-c", "read -P 0x42 0 1"],
    ["-c", "open -o driver=IMGFMT,file.driver=file,file.filename=t.IMGFMT", "-c", "read -P 0x42 0 1"],
    ["-c", "open -o zz t.IMGFMT"],
    ["-c", "open -r"],
    ["-c", "open -o driver=vdi t.vhdx"],
    ["-s", "-c", "write -P 0x55 0 128k", "-c", "read -P 0x55 0 128k", "t.IMGFMT"],
    ["-s", "-U", "-c", "write -P 0x55 0 1", "t.IMGFMT"],
    ["-U", "-c", "read 0 1", "t.IMGFMT"],
]


@pytest.fixture(params=["vhdx", "vdi"])
def image_twins(request: pytest.FixtureRequest, twins: Twins) -> tuple[Twins, str]:
    """The twin directories, each with ``t.<fmt>`` (64 KiB of 0x42 at 0) and ``t.vhdx``."""
    fmt = request.param
    for directory in (twins.qemu, twins.ours):
        for name, image_fmt in ((f"t.{fmt}", fmt), ("t.vhdx", "vhdx")):
            path = str(directory / name)
            assert run_tool([twins.qemu_img, "create", "-q", "-f", image_fmt, path, "8M"]).returncode == 0
            assert run_tool([twins.qemu_io, "-c", "write -P 0x42 0 64k", path]).returncode == 0
    return twins, fmt


@pytest.mark.qemu
@pytest.mark.parametrize("args", OPEN_CASES, ids=" ".join)
def test_option_trees_open_as_in_qemu_io(image_twins: tuple[Twins, str], args: list[str]) -> None:
    twins, fmt = image_twins
    args = [arg.replace("IMGFMT", fmt) for arg in args]
    theirs, ours = twins.both("io", args)
    assert ours == theirs
    # VHDX headers carry random session GUIDs: compare the disks qemu-img sees, not the files
    ours_path, theirs_path = str(twins.ours / f"t.{fmt}"), str(twins.qemu / f"t.{fmt}")
    compare = run_tool([twins.qemu_img, "compare", "-f", fmt, "-F", fmt, ours_path, theirs_path])
    assert compare.returncode == 0, compare.stdout


def test_snapshot_leaves_the_image_untouched(tmp_path: Path, run_cli) -> None:
    """-s: the write is visible to later commands, the file is byte for byte what it was."""
    image = tmp_path / "t.raw"
    image.write_bytes(bytes(1 << 16))
    result = run_cli(
        "io", ["-s", "-f", "raw", "-c", "write -P 9 100 1000", "-c", "read -P 9 100 1000", str(image)]
    )
    assert result.code == 0, result
    assert image.read_bytes() == bytes(1 << 16)
