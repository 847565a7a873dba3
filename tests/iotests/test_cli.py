"""``python -m iotests``: formats from the plugins, ``not run`` without a scenario, ``--regen``."""

from __future__ import annotations

import textwrap

import pytest

from blockfmt.host import default_host
from iotests import __main__ as cli
from iotests.runner import discover, regenerate

SCENARIO = textwrap.dedent(
    """
    FORMATS = ("vhdx", "vdi")
    GROUPS = ("quick",)

    def run(t):
        t.echo("QA output created by demo")
        t.make_test_img("4M")
        t.qemu_io("write -P 0x5a 1000 70000")
        t.qemu_io("read -P 0x5a 1000 70000", read_only=True)
    """
)


@pytest.fixture
def scenario_dir(tmp_path, monkeypatch):
    """A scenario directory holding one new scenario, ``demo``, with no expected output yet."""
    (tmp_path / "demo.py").write_text(SCENARIO)
    monkeypatch.setattr(cli, "discover", lambda: discover(tmp_path))
    return tmp_path


def test_format_choices_are_the_installed_plugins(capsys):
    with pytest.raises(SystemExit):
        cli.main(["-f", "no-such-format"])
    installed = ", ".join(repr(name) for name in sorted(default_host().formats))
    assert {"raw", "vdi", "vhdx"} <= set(default_host().formats)
    assert f"(choose from {installed})" in capsys.readouterr().err


def test_a_format_without_scenario_is_not_run_and_fails_the_run(capsys):
    assert cli.main(["-f", "raw"]) == 1
    out = capsys.readouterr()
    assert "not run  [no selected scenario supports raw]" in out.out
    assert out.out.splitlines()[-1] == "0 passed, 0 failed, 1 not run"
    assert "nothing was tested" in out.err


def test_regenerate_writes_one_file_when_the_formats_agree(scenario_dir):
    (scenario,) = discover(scenario_dir).values()
    assert regenerate(scenario, {"vhdx": "same\n", "vdi": "same\n"}) == [scenario_dir / "demo.out"]
    assert (scenario_dir / "demo.out").read_text() == "same\n"


def test_regenerate_writes_one_file_per_format_when_they_differ(scenario_dir):
    (scenario,) = discover(scenario_dir).values()
    written = regenerate(scenario, {"vhdx": "a\n", "vdi": "b\n"})
    assert written == [scenario_dir / "demo.out.vhdx", scenario_dir / "demo.out.vdi"]
    assert scenario.expected_path("vdi").read_text() == "b\n"


def test_a_new_scenario_without_expected_output_says_how_to_make_it(scenario_dir, capsys):
    assert cli.main(["-f", "vhdx", "--backend", "blockfmt", "demo"]) == 1
    assert "no expected output demo.out (python -m iotests --regen writes it)" in capsys.readouterr().out


@pytest.mark.qemu
def test_regen_records_real_qemu_and_blockfmt_then_matches(scenario_dir, capsys, qemu_img, qemu_io):
    assert cli.main(["-f", "vhdx", "-f", "vdi", "--regen", "demo"]) == 0
    # after the filters both formats print the same transcript: one file
    assert not list(scenario_dir.glob("demo.out.*"))
    expected = (scenario_dir / "demo.out").read_text()
    assert expected.startswith("QA output created by demo\nFormatting 'TEST_DIR/t.IMGFMT', fmt=IMGFMT size=")
    assert "wrote 70000/70000 bytes at offset 1000\n" in expected
    assert "read 70000/70000 bytes at offset 1000\n" in expected
    assert cli.main(["-f", "vhdx", "-f", "vdi", "--backend", "blockfmt", "demo"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 passed, 0 failed, 0 not run"
