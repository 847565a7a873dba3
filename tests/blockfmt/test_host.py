"""The pluggy host: entry-point discovery, a third-party plugin end to end, probing, conflicts."""

from __future__ import annotations

from pathlib import Path

import pytest

import blockfmt
from blockfmt import FormatSpec, Host, PluginError, get_plugin_manager, hookimpl
from blockfmt.cli import img as img_cli

#: a complete format plugin, installed into tmp_path as its own distribution
DEMO_PLUGIN = '''
"""demofmt: a 512-byte header ("DEMOFMT1" + little-endian size) followed by the disk."""
import struct

import blockfmt
from blockfmt.driver import CheckResult, CreateOption, FormatDriver, FormatSpec, OpenOption

MAGIC = b"DEMOFMT1"
HEADER = struct.Struct("<8sQ")
DATA_OFFSET = 512


class DemoDriver(FormatDriver):
    def __init__(self, file, *, read_only, options):
        super().__init__(file, read_only=read_only)
        self.mode = options.get("mode", "plain")
        magic, self.size = HEADER.unpack(file.pread_exact(HEADER.size, 0, "demo header"))
        if magic != MAGIC:
            raise blockfmt.CorruptImageError("Image not in demo format")

    def readinto(self, offset, buf):
        got = self.file.preadinto(buf, DATA_OFFSET + offset)
        buf[got:] = bytes(len(buf) - got)

    def write(self, offset, data):
        self.file.pwrite(data, DATA_OFFSET + offset)


@blockfmt.hookimpl
def blockfmt_formats():
    return [FormatSpec("demo", "Demo format", (CreateOption("size", "size", "Virtual disk size"),
                                               CreateOption("label", "string", "Label", default="x")),
                       open_options=(OpenOption("mode", "how to open", ("plain", "shout")),))]


@blockfmt.hookimpl
def blockfmt_probe(head):
    return ("demo", 100) if head.startswith(MAGIC) else None


@blockfmt.hookimpl
def blockfmt_open(format, file, read_only, options):
    return DemoDriver(file, read_only=read_only, options=options) if format == "demo" else None


@blockfmt.hookimpl
def blockfmt_create(format, file, size, options):
    if format != "demo":
        return None
    file.pwrite(HEADER.pack(MAGIC, size).ljust(DATA_OFFSET, b"\\0"), 0)
    file.truncate(DATA_OFFSET + size)
    return True


@blockfmt.hookimpl
def blockfmt_check(format, driver, repair):
    if format != "demo":
        return None
    return CheckResult(messages=["demo: all fine"])
'''


@pytest.fixture
def demo_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    """A fresh host that found the demo plugin through a real ``blockfmt.formats`` entry point."""
    site = tmp_path / "site"
    dist_info = site / "demofmt-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (site / "demofmt_plugin.py").write_text(DEMO_PLUGIN)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: demofmt\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[blockfmt.formats]\ndemo = demofmt_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("BLOCKFMT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return Host(get_plugin_manager())


def test_builtin_formats_are_registered_without_entry_points() -> None:
    """raw, vhdx and vdi are there even with autoload off, each under its own plugin name."""
    host = Host(get_plugin_manager(autoload=False))
    assert list(host.formats) == ["raw", "vhdx", "vdi"]
    assert {name: spec.plugin_name for name, spec in host.formats.items()} == {
        "raw": "raw",
        "vhdx": "vhdx",
        "vdi": "vdi",
    }
    assert host.load_errors == []


def test_autoload_can_be_disabled(demo_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """BLOCKFMT_DISABLE_PLUGIN_AUTOLOAD drops entry-point plugins, keeps the built-ins (as pytest does)."""
    assert "demo" in demo_host.formats
    monkeypatch.setenv("BLOCKFMT_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert set(Host(get_plugin_manager()).formats) == {"raw", "vhdx", "vdi"}


def test_external_plugin_end_to_end(demo_host: Host, tmp_path: Path) -> None:
    """Created, probed, opened, written, read back and checked through the host."""
    path = tmp_path / "disk.demo"
    blockfmt.create(path, "demo", 1 << 20, host=demo_host, label="hello")
    assert demo_host.formats["demo"].plugin_name == "demo"
    assert blockfmt.probe(path, host=demo_host) == "demo"
    with blockfmt.open(path, read_only=False, host=demo_host) as image:
        assert (image.format, image.size) == ("demo", 1 << 20)
        image.write_at(4096, b"payload")
    with blockfmt.open(path, host=demo_host) as image:
        assert image.read_at(4090, 16) == bytes(6) + b"payload" + bytes(3)
        assert image.check().messages == ["demo: all fine"]
    assert path.read_bytes()[512 + 4096 : 512 + 4103] == b"payload"


def test_declared_open_options_are_checked_by_the_host(demo_host: Host, tmp_path: Path) -> None:
    """A plugin's FormatSpec.open_options reach its driver; anything else is refused before it runs."""
    path = tmp_path / "disk.demo"
    blockfmt.create(path, "demo", 1 << 20, host=demo_host)
    with blockfmt.open(path, options={"mode": "shout"}, host=demo_host) as image:
        assert image.driver.mode == "shout"
    for options, message in (
        ({"mode": "loud"}, "Parameter 'mode' expects 'plain' or 'shout'"),
        ({"colour": "red"}, "Invalid parameter 'colour'"),
    ):
        with pytest.raises(blockfmt.InvalidOptionError) as info:
            blockfmt.open(path, options=options, host=demo_host)
        assert str(info.value) == message


def test_external_plugin_through_the_cli(
    demo_host: Host, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI serves a format it has never heard of: options, Formatting line, info, check."""
    monkeypatch.chdir(tmp_path)
    assert img_cli.main(["create", "-f", "demo", "-o", "help"], host=demo_host) == 0
    assert "  label=<str>            - Label\n" in capsys.readouterr().out
    assert img_cli.main(["create", "-f", "demo", "d.img", "64k"], host=demo_host) == 0
    assert capsys.readouterr().out == "Formatting 'd.img', fmt=demo size=65536 label=x\n"
    assert img_cli.main(["info", "d.img"], host=demo_host) == 0
    assert capsys.readouterr().out.startswith(
        "image: d.img\nfile format: demo\nvirtual size: 64 KiB (65536 bytes)\n"
    )
    assert img_cli.main(["check", "d.img"], host=demo_host) == 0
    out, err = capsys.readouterr()
    assert (out, err) == ("No errors were found on the image.\n", "demo: all fine\n")


def test_raw_is_the_probe_fallback_only(demo_host: Host, tmp_path: Path) -> None:
    """A file someone claims never probes as raw; an unclaimed one does."""
    other = tmp_path / "plain.bin"
    other.write_bytes(b"DEMOFMT0" + bytes(1000))
    assert blockfmt.probe(other, host=demo_host) == "raw"
    claimed = tmp_path / "claimed.bin"
    claimed.write_bytes(b"DEMOFMT1" + bytes(1000))
    assert blockfmt.probe(claimed, host=demo_host) == "demo"


class _Impostor:
    """A second plugin claiming the name raw."""

    @hookimpl
    def blockfmt_formats(self) -> list[FormatSpec]:
        return [FormatSpec("raw", "not really raw")]


def test_two_plugins_claiming_one_format_name_is_an_error() -> None:
    """Registered by hand, the impostor is a PluginError naming the format and both plugins."""
    pm = get_plugin_manager(autoload=False)
    pm.register(_Impostor(), name="impostor")
    with pytest.raises(PluginError) as info:
        Host(pm)
    assert str(info.value) == "format 'raw' is provided by two plugins: 'raw' and 'impostor'"


class _BrokenHook:
    @hookimpl
    def blockfmt_no_such_hook(self) -> None:
        """Misspelt hooks are rejected, not ignored."""


def test_misspelt_hook_is_a_plugin_error() -> None:
    """check_pending turns an unknown hook name into PluginError."""
    with pytest.raises(PluginError, match="blockfmt_no_such_hook"):
        get_plugin_manager([_BrokenHook()], autoload=False)
