"""``blockfmt-img`` on chains: create -b/-F, info --backing-chain, map depth, commit, rebase,
convert (flattening), compare and check; QEMU checks the parents it can read."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

import blockfmt
from blockfmt.testing.qemu import run_tool
from tests.cli.conftest import run_in_process

from .builders import MiB
from .peers import read_libvhdi

SIZE = 8 * MiB
PAIRS = [("vhdx", ("base.vhdx", "top.avhdx")), ("vdi", ("base.vdi", "top.vdi"))]
#: (qemu-io command, offset, length, byte) per layer, base first
LAYERS = (
    ("write -P 0x01 0 64k", 0, 64 * 1024, 0x01),
    ("write -P 0x02 1048576 65536", MiB, 64 * 1024, 0x02),
    ("write -P 0x03 2097664 1536", 2 * MiB + 512, 1536, 0x03),
)


@pytest.fixture
def img(capsys, monkeypatch, tmp_path):
    def run(*args: str) -> tuple[int, str, str]:
        outcome = run_in_process(capsys, monkeypatch, tmp_path, "img", list(args))
        return outcome.code, outcome.stdout, outcome.stderr

    return run


def build(img, tmp_path: Path, fmt: str, names: tuple[str, ...]) -> bytes:
    """Create the chain *names* (base first) with blockfmt-img and write LAYERS through blockfmt."""
    model = bytearray(SIZE)
    for depth, name in enumerate(names):
        if depth == 0:
            code, _, err = img("create", "-q", "-f", fmt, name, str(SIZE))
        else:
            code, _, err = img("create", "-q", "-f", fmt, "-b", names[depth - 1], "-F", fmt, name)
        assert code == 0, err
        _, offset, length, byte = LAYERS[depth]
        with blockfmt.open(tmp_path / name, read_only=False) as image:
            image.write_at(offset, bytes([byte]) * length)
        model[offset : offset + length] = bytes([byte]) * length
    return bytes(model)


def shape(text: str) -> list[str]:
    """The keys of ``info`` text, without the format-specific block (which differs by format)."""
    keys, skipping = [], False
    for line in text.splitlines():
        if line.startswith("Format specific information:"):
            skipping = True
        elif not line.startswith(" "):
            skipping = False
        if not skipping and line:
            keys.append(line.split(":", 1)[0])
        elif not line:
            keys.append("")
    return keys


@pytest.mark.qemu
def test_info_backing_chain_has_qemu_img_shape(img, tmp_path, qemu_img, qemu_io):
    build(img, tmp_path, "vhdx", ("base.vhdx", "mid.avhdx", "top.avhdx"))
    qemu_dir = tmp_path / "qemu"
    qemu_dir.mkdir()
    names = ("base.qcow2", "mid.qcow2", "top.qcow2")
    for depth, name in enumerate(names):
        backing = ["-b", names[depth - 1], "-F", "qcow2"] if depth else []
        run_tool([qemu_img, "create", "-q", "-f", "qcow2", *backing, name, str(SIZE)], cwd=str(qemu_dir))
    theirs = run_tool([qemu_img, "info", "--backing-chain", "top.qcow2"], cwd=str(qemu_dir)).stdout
    code, ours, _ = img("info", "--backing-chain", "top.avhdx")
    assert code == 0
    assert shape(ours) == shape(theirs)
    assert "backing file: mid.avhdx\nbacking file format: vhdx\n" in ours
    assert "image: base.vhdx\n" in ours
    theirs_json = json.loads(
        run_tool(
            [qemu_img, "info", "--backing-chain", "--output=json", "top.qcow2"], cwd=str(qemu_dir)
        ).stdout
    )
    code, ours_text, _ = img("info", "--backing-chain", "--output=json", "top.avhdx")
    ours_json = json.loads(ours_text)
    assert [list(k for k in o if k != "format-specific") for o in theirs_json] == [list(o) for o in ours_json]
    assert [
        (o["filename"], o.get("backing-filename"), o.get("full-backing-filename")) for o in ours_json
    ] == [
        ("top.avhdx", "mid.avhdx", "mid.avhdx"),
        ("mid.avhdx", "base.vhdx", "base.vhdx"),
        ("base.vhdx", None, None),
    ]


def test_map_shows_the_depth_of_each_layer(img, tmp_path):
    build(img, tmp_path, "vhdx", ("base.vhdx", "mid.avhdx", "top.avhdx"))
    code, out, _ = img("map", "--output=json", "top.avhdx")
    rows = [(r["start"], r["length"], r["depth"], r["present"], r["data"]) for r in json.loads(out)]
    assert code == 0
    assert rows == [  # the base's one 8 MiB block is data everywhere the children do not hold
        (0, MiB, 2, True, True),
        (MiB, 64 * 1024, 1, True, True),
        (MiB + 64 * 1024, MiB - 64 * 1024 + 512, 2, True, True),
        (2 * MiB + 512, 1536, 0, True, True),
        (2 * MiB + 2048, SIZE - 2 * MiB - 2048, 2, True, True),
    ]
    code, out, _ = img("map", "top.avhdx")
    layers = [line.split()[-1] for line in out.splitlines()[1:]]
    assert layers == ["base.vhdx", "mid.avhdx", "base.vhdx", "top.avhdx", "base.vhdx"]


@pytest.mark.qemu
@pytest.mark.parametrize(
    ("fmt", "names"), [("vhdx", ("base.vhdx", "top.avhdx")), ("vdi", ("base.vdi", "top.vdi"))]
)
def test_commit_into_a_parent_qemu_checks(img, tmp_path, qemu_img, fmt, names):
    model = build(img, tmp_path, fmt, names)
    code, out, err = img("commit", names[1])
    assert (code, out, err) == (0, "Image committed.\n", "")
    check = run_tool([qemu_img, "check", "-f", fmt, names[0]], cwd=str(tmp_path))
    assert check.returncode == 0 and "No errors were found on the image." in check.stdout, check.output
    run_tool([qemu_img, "convert", "-f", fmt, "-O", "raw", names[0], "flat.raw"], cwd=str(tmp_path))
    assert (tmp_path / "flat.raw").read_bytes() == model
    with blockfmt.open(tmp_path / names[1]) as top:  # relinked to the parent's new identity
        assert top.read_at(0, SIZE) == model


@pytest.mark.qemu
def test_safe_rebase_keeps_the_content_and_unsafe_rebase_only_relinks(img, tmp_path, qemu_img):
    model = build(img, tmp_path, "vhdx", ("base.vhdx", "mid.avhdx", "top.avhdx"))
    base_digest = hashlib.sha256((tmp_path / "base.vhdx").read_bytes()).hexdigest()
    assert img("rebase", "-b", "base.vhdx", "top.avhdx")[0] == 0
    with blockfmt.open(tmp_path / "top.avhdx") as top:
        assert len(top.backing_chain()) == 2
        assert top.read_at(0, SIZE) == model
    assert hashlib.sha256((tmp_path / "base.vhdx").read_bytes()).hexdigest() == base_digest
    check = run_tool([qemu_img, "check", "-f", "vhdx", "base.vhdx"], cwd=str(tmp_path))
    assert check.returncode == 0, check.output
    shutil.copyfile(tmp_path / "base.vhdx", tmp_path / "copy.vhdx")
    assert img("rebase", "-u", "-b", "copy.vhdx", "top.avhdx")[0] == 0
    with blockfmt.open(tmp_path / "top.avhdx") as top:
        assert top.backing_name == "copy.vhdx"
        assert top.read_at(0, SIZE) == model
    assert read_libvhdi([tmp_path / "copy.vhdx", tmp_path / "top.avhdx"], SIZE) == model


@pytest.mark.parametrize(
    ("fmt", "names"), [("vhdx", ("base.vhdx", "top.avhdx")), ("vdi", ("base.vdi", "top.vdi"))]
)
def test_convert_flattens_compare_and_check_see_the_chain(img, tmp_path, fmt, names):
    model = build(img, tmp_path, fmt, names)
    assert img("convert", "-O", "raw", names[1], "flat.raw")[0] == 0
    assert (tmp_path / "flat.raw").read_bytes() == model
    assert img("compare", names[1], "flat.raw") == (0, "Images are identical.\n", "")
    assert img("compare", names[0], names[1])[1] == f"Content mismatch at offset {MiB}!\n"
    assert img("check", names[1]) == (0, "No errors were found on the image.\n", "")
    assert img("info", names[1])[1].endswith(f"backing file: {names[0]}\nbacking file format: {fmt}\n")


def test_chain_command_errors_are_one_line(img, tmp_path):
    """The outputs pass the iotests filters, which spell the program ``qemu-img``."""
    build(img, tmp_path, "vhdx", ("base.vhdx",))
    blockfmt.create(tmp_path / "other.vdi", "vdi", SIZE)
    assert img("commit", "base.vhdx") == (1, "", "qemu-img: Image does not have a backing file\n")
    errors = {
        "missing.vhdx": "Could not open 'missing.vhdx': No such file or directory",
        "other.vdi": "a vhdx image needs a vhdx backing file, and 'other.vdi' is vdi",
    }
    for backing, message in errors.items():
        assert img("create", "-q", "-f", "vhdx", "-b", backing, "c.avhdx") == (
            1,
            "",
            f"qemu-img: c.avhdx: {message}\n",
        )
    size_error = "a differencing VHDX must have its parent's virtual size (8388608 bytes)"
    assert (
        img("create", "-q", "-f", "vhdx", "-b", "base.vhdx", "c.avhdx", "16M")[2]
        == f"qemu-img: c.avhdx: {size_error}\n"
    )
    assert not (tmp_path / "c.avhdx").exists()


@pytest.mark.parametrize(("fmt", "names"), PAIRS)
def test_qemu_io_alloc_and_map_count_only_the_top_image(img, capsys, monkeypatch, tmp_path, fmt, names):
    """qemu-io's ``alloc``/``map`` ask the top image alone, as QEMU's bdrv_is_allocated does: bytes
    that only a parent holds are "not allocated" in the child."""
    build(img, tmp_path, fmt, names)
    child = names[1]
    outcome = run_in_process(capsys, monkeypatch, tmp_path, "io", ["-c", "alloc 0 2M", child])
    assert outcome.code == 0, outcome.stderr
    if fmt == "vhdx":  # sector bitmaps: exactly the 64 KiB written into the child
        assert outcome.stdout == "65536/2097152 bytes allocated at offset 0 bytes\n"
    else:  # VDI copies the written 1 MiB block up whole
        assert outcome.stdout == "1048576/2097152 bytes allocated at offset 0 bytes\n"
    outcome = run_in_process(capsys, monkeypatch, tmp_path, "io", ["-c", "map", child])
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.splitlines()[0] == "1 MiB (0x100000) bytes not allocated at offset 0 bytes (0x0)"


@pytest.mark.qemu
def test_commit_and_rebase_take_qemu_img_7_2_options(img, tmp_path, qemu_img):
    """-p, -b, -r, -t/-T, --image-opts and json: names, as qemu-img 7.2 spells them; the option
    errors are qemu-img's own lines (real qemu-img checks them before it opens anything)."""
    model = build(img, tmp_path, "vhdx", ("base.vhdx", "mid.avhdx", "top.avhdx"))
    for args in (["commit", "-r", "xx", "top.avhdx"], ["commit", "-t", "bogus", "top.avhdx"]):
        theirs = run_tool([qemu_img, *args], cwd=str(tmp_path))
        assert img(*args) == (1, "", theirs.stderr), theirs.output
    theirs = run_tool([qemu_img, "rebase", "-T", "bogus", "-b", "base.vhdx", "top.avhdx"], cwd=str(tmp_path))
    assert img("rebase", "-T", "bogus", "-b", "base.vhdx", "top.avhdx") == (1, "", theirs.stderr)
    assert img("commit", "-b", "missing.vhdx", "top.avhdx") == (
        1,
        "",
        "qemu-img: Did not find 'missing.vhdx' in the backing chain of 'top.avhdx'\n",
    )
    assert img("commit", "-b", "base.vhdx", "top.avhdx") == (
        1,
        "",
        "qemu-img: blockfmt: commit -b 'base.vhdx': only the direct backing file can be the base\n",
    )
    code, out, err = img("commit", "-p", "-r", "1M", "-t", "none", "-b", "mid.avhdx", "top.avhdx")
    assert (code, err) == (0, "")
    assert out.startswith("    (0.00/100%)\r") and out.endswith("    (100.00/100%)\r\nImage committed.\n")
    with blockfmt.open(tmp_path / "mid.avhdx") as mid:  # the top layer's data is in mid now
        assert mid.read_at(0, SIZE) == model
    opts = "driver=vhdx,file.driver=file,file.filename=top.avhdx"
    assert img("commit", "-q", "--image-opts", opts) == (0, "", "")
    code, out, err = img(
        "rebase",
        "-p",
        "-t",
        "writeback",
        "-T",
        "none",
        "-F",
        "vhdx",
        "-b",
        "base.vhdx",
        'json:{"driver": "vhdx", "file": {"driver": "file", "filename": "top.avhdx"}}',
    )
    assert (code, err) == (0, "") and out.endswith("    (100.00/100%)\r\n")
    with blockfmt.open(tmp_path / "top.avhdx") as top:
        assert [layer.filename for layer in top.backing_chain()] == [
            str(tmp_path / "top.avhdx"),
            str(tmp_path / "base.vhdx"),
        ]
        assert top.read_at(0, SIZE) == model
    assert img(
        "rebase", "--image-opts", "driver=vhdx,file.filename=top.avhdx,log_replay=memory", "-b", "x"
    ) == (
        1,
        "",
        "qemu-img: Block format 'vhdx' does not support the option 'log_replay'\n",
    )
