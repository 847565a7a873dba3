"""Plugin loading in isolation: broken third-party plugins beside good ones, selection, listing.

Each third-party plugin is a real distribution: a module plus ``NAME-VERSION.dist-info`` with an
``entry_points.txt``, written into a directory put on the path (in-process) or on ``PYTHONPATH``
(for the CLI, which then runs exactly as an installed one).
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

import blockfmt
from blockfmt.host import ENTRY_POINT_GROUP, Host, get_plugin_manager
from blockfmt.plugins import find_entry_points, load_plugins

GOOD_PLUGIN = '''
"""goodfmt: the disk after an 8-byte magic."""
from blockfmt import FormatDriver, FormatSpec, CreateOption, hookimpl

MAGIC = b"GOODFMT1"


class GoodDriver(FormatDriver):
    def __init__(self, file, *, read_only):
        super().__init__(file, read_only=read_only)
        self.size = file.size() - len(MAGIC)

    def readinto(self, offset, buf):
        buf[:] = self.file.pread(len(buf), len(MAGIC) + offset)


@hookimpl
def blockfmt_formats():
    return [FormatSpec("good", "A good format", (CreateOption("size", "size", "Virtual disk size"),))]


@hookimpl
def blockfmt_probe(head):
    return ("good", 100) if head.startswith(MAGIC) else None


@hookimpl
def blockfmt_open(file, read_only):
    return GoodDriver(file, read_only=read_only)


@hookimpl
def blockfmt_create(file, size):
    file.pwrite(MAGIC, 0)
    file.truncate(len(MAGIC) + size)
    return True
'''
#: a syntax error on line 3 of the module
SYNTAX_ERROR_PLUGIN = '"""A plugin with a typo."""\n\ndef blockfmt_formats(:\n    return []\n'
IMPORT_ERROR_PLUGIN = "import blockfmt_no_such_dependency\n"
#: valid hooks first, then a misspelt one: nothing of it may stay registered
BAD_HOOK_PLUGIN = """
from blockfmt import FormatSpec, hookimpl


@hookimpl
def blockfmt_formats():
    return [FormatSpec("badhook", "registers, then fails")]


@hookimpl
def blockfmt_opne(file):
    return None
"""
#: claims a built-in's format name
IMPOSTOR_PLUGIN = """
from blockfmt import FormatSpec, hookimpl


@hookimpl
def blockfmt_formats():
    return [FormatSpec("vhdx", "not really vhdx")]
"""


def install(
    site: Path, dist: str, version: str, modules: dict[str, str], entry_points: dict[str, str]
) -> None:
    """Write a distribution into *site*: its modules and a dist-info declaring *entry_points*."""
    dist_info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (dist_info / "entry_points.txt").write_text(
        f"[console_scripts]\nx = y:z\n\n[{ENTRY_POINT_GROUP}]\n{lines}"
    )
    for name, text in modules.items():
        (site / f"{name}.py").write_text(text)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of installed distributions: one good plugin and two that cannot be imported."""
    site = tmp_path / "site"
    install(site, "goodfmt", "1.0", {"goodfmt_plugin": GOOD_PLUGIN}, {"good": "goodfmt_plugin"})
    install(site, "typo_fmt", "0.3", {"typofmt_plugin": SYNTAX_ERROR_PLUGIN}, {"typo": "typofmt_plugin"})
    install(site, "needy-fmt", "2.0", {"needyfmt_plugin": IMPORT_ERROR_PLUGIN}, {"needy": "needyfmt_plugin"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("BLOCKFMT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    # only these: other third-party plugins may be installed in the test environment (the example)
    monkeypatch.setenv("BLOCKFMT_PLUGINS", SITE_PLUGINS)
    return site


SITE_PLUGINS = "good,typo,needy"
TYPO_ERROR = (
    "format plugin 'typo' (from typo_fmt 0.3) failed to load and is skipped: "
    "SyntaxError: invalid syntax (typofmt_plugin.py, line 3)"
)
NEEDY_ERROR = (
    "format plugin 'needy' (from needy-fmt 2.0) failed to load and is skipped: "
    "ModuleNotFoundError: No module named 'blockfmt_no_such_dependency'"
)


def test_broken_plugins_are_skipped_and_named(site: Path, tmp_path: Path) -> None:
    """The good plugin and the built-ins work; each broken one is one line naming it and its distribution."""
    host = Host(get_plugin_manager())
    assert sorted(host.load_errors) == sorted([TYPO_ERROR, NEEDY_ERROR])
    assert set(host.formats) == {"raw", "vhdx", "vdi", "good"}
    for fmt in ("good", "vhdx", "vdi", "raw"):
        path = tmp_path / f"disk.{fmt}"
        blockfmt.create(path, fmt, 1 << 20, host=host)
        assert blockfmt.probe(path, host=host) == fmt
        with blockfmt.open(path, host=host) as image:
            assert (image.size, image.read_at(0, 4096)) == (1 << 20, bytes(4096))


def test_plugin_with_a_rejected_hook_leaves_nothing_behind(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pluggy rejects the misspelt hook after the good one registered: neither stays."""
    install(site, "badhook", "1", {"badhook_plugin": BAD_HOOK_PLUGIN}, {"badhook": "badhook_plugin"})
    monkeypatch.setenv("BLOCKFMT_PLUGINS", f"{SITE_PLUGINS},badhook")
    host = Host(get_plugin_manager())
    assert "badhook" not in host.formats
    assert not host.pm.has_plugin("badhook")
    [error] = [line for line in host.load_errors if "'badhook'" in line]
    assert error.startswith("format plugin 'badhook' (from badhook 1) failed to load and is skipped: ")
    assert "blockfmt_opne" in error and "\n" not in error


def test_plugin_claiming_a_taken_format_is_skipped(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A third party cannot take over vhdx: it is reported and the built-in keeps serving."""
    install(site, "impostor", "1", {"impostor_plugin": IMPOSTOR_PLUGIN}, {"impostor": "impostor_plugin"})
    monkeypatch.setenv("BLOCKFMT_PLUGINS", f"{SITE_PLUGINS},impostor")
    host = Host(get_plugin_manager())
    assert host.formats["vhdx"].plugin_name == "vhdx"
    assert (
        "format plugin 'impostor' is skipped: format 'vhdx' is provided by two plugins: 'vhdx' and 'impostor'"
        in host.load_errors
    )
    blockfmt.create(tmp_path / "d.vhdx", "vhdx", 1 << 20, host=host)
    with blockfmt.open(tmp_path / "d.vhdx", host=host) as image:
        assert image.check().clean


def test_explicit_plugin_list(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BLOCKFMT_PLUGINS loads only the entry points named (the built-ins stay); unknown names are reported."""
    monkeypatch.setenv("BLOCKFMT_PLUGINS", "good")
    host = Host(get_plugin_manager())
    assert (set(host.formats), host.load_errors) == ({"raw", "vhdx", "vdi", "good"}, [])
    monkeypatch.setenv("BLOCKFMT_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "good" in Host(get_plugin_manager()).formats  # an explicit list wins over disabled autoload
    host = Host(load_plugins(only=["good", "nosuch"]))
    assert host.load_errors == ["format plugin 'nosuch' named in BLOCKFMT_PLUGINS is not installed"]


def test_entry_points_match_importlib_metadata(site: Path) -> None:
    """The fast reader finds what importlib.metadata finds, for our group and a busy one (pytest11)."""
    for group in (ENTRY_POINT_GROUP, "pytest11", "console_scripts"):
        ours = sorted((ep.name, ep.value) for ep in find_entry_points(group))
        theirs = sorted((ep.name, ep.value) for ep in importlib.metadata.entry_points(group=group))
        assert ours == theirs, group
    by_name = {ep.name: ep.distribution for ep in find_entry_points(ENTRY_POINT_GROUP, [str(site)])}
    assert by_name == {"good": "goodfmt 1.0", "typo": "typo_fmt 0.3", "needy": "needy-fmt 2.0"}


def cli(site: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run blockfmt-img (of this environment) with *site* on PYTHONPATH."""
    script = Path(sys.executable).with_name("blockfmt-img")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKFMT_")}
    environ.update({"BLOCKFMT_PLUGINS": SITE_PLUGINS, **env}, PYTHONPATH=str(site))
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, cwd=cwd, env=environ, timeout=60, check=False
    )


def test_cli_keeps_working_and_says_once_what_failed(site: Path, tmp_path: Path) -> None:
    """Every command still works; each broken plugin costs one stderr line, not a traceback."""
    warnings = sorted(f"blockfmt-img: warning: {line}\n" for line in (TYPO_ERROR, NEEDY_ERROR))
    for fmt in ("vhdx", "vdi", "raw", "good"):
        run = cli(site, tmp_path, "create", "-q", "-f", fmt, f"d.{fmt}", "1M")
        assert (run.returncode, sorted(run.stderr.splitlines(keepends=True))) == (0, warnings)
        run = cli(site, tmp_path, "info", f"d.{fmt}")
        assert run.returncode == 0 and f"file format: {fmt}\n" in run.stdout
        assert sorted(run.stderr.splitlines(keepends=True)) == warnings
    run = cli(site, tmp_path, "check", "d.vdi", BLOCKFMT_DISABLE_PLUGIN_AUTOLOAD="1", BLOCKFMT_PLUGINS="")
    assert (run.returncode, run.stdout, run.stderr) == (0, "No errors were found on the image.\n", "")


def test_cli_lists_plugins_and_load_errors(site: Path, tmp_path: Path) -> None:
    """``--list-plugins``: one line per plugin with its formats or its load error; exit 1 if any failed."""
    run = cli(site, tmp_path, "--list-plugins")
    assert run.returncode == 1 and run.stderr == ""
    lines = run.stdout.splitlines()
    assert lines[:3] == ["raw (built-in): raw", "vhdx (built-in): vhdx", "vdi (built-in): vdi"]
    assert sorted(lines[3:]) == sorted(
        [
            "good (goodfmt 1.0): good",
            f"needy (needy-fmt 2.0): not loaded: {NEEDY_ERROR}",
            f"typo (typo_fmt 0.3): not loaded: {TYPO_ERROR}",
        ]
    )
    run = cli(site, tmp_path, "--list-plugins", BLOCKFMT_PLUGINS="good")
    assert (run.returncode, run.stdout.splitlines()[3:]) == (0, ["good (goodfmt 1.0): good"])
