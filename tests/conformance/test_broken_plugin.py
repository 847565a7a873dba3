"""A deliberately broken third-party plugin, installed through a real entry point, fails the suite readably.

The plugin is a module plus ``brokenfmt-0.1.dist-info/{METADATA,entry_points.txt}`` written into
a temporary directory put on ``sys.path``; the suite then runs on it in-process with pytester,
exactly as the plugin's author would run it.
"""

from __future__ import annotations

import importlib
import textwrap

import pytest

pytest_plugins = ["pytester"]

BROKEN_PLUGIN = '''
"""A format plugin with one bug per contract the conformance suite checks."""
import struct

from blockfmt import CreateOption, Extent, FormatDriver, FormatSpec, hookimpl

MAGIC = b"BROKENFM"
HEADER = struct.Struct("<8sQ")


class BrokenDriver(FormatDriver):
    def __init__(self, file, read_only):
        super().__init__(file, read_only=read_only)
        # bug: no length check, so a truncated file raises struct.error
        _, self.size = HEADER.unpack(file.pread(min(HEADER.size, file.size()), 0))

    def readinto(self, offset, buf):
        buf[:] = self.file.pread(len(buf), HEADER.size)  # bug: ignores offset

    def write(self, offset, data):
        self.file.pwrite(data, HEADER.size + offset)

    def block_status(self, offset, length):
        yield Extent(offset, length // 2 or length, data=True, zero=False)  # bug: covers half


@hookimpl
def blockfmt_formats():
    # bug: no description
    return [FormatSpec("broken", "", (CreateOption("size", "size", "Virtual disk size"),))]


@hookimpl
def blockfmt_probe(head):
    return ("broken", 100)  # bug: claims every file


@hookimpl
def blockfmt_open(format, file, read_only):
    return BrokenDriver(file, read_only) if format == "broken" else None


@hookimpl
def blockfmt_create(format, file, size):
    if format != "broken":
        return None
    file.pwrite(HEADER.pack(MAGIC, size), 0)
    file.truncate(HEADER.size + size)
    return True
'''

SUITE_FOR_BROKEN = """
import pytest
from blockfmt.testing.conformance import AbstractFormatTests


class TestBroken(AbstractFormatTests):
    @pytest.fixture
    def format_name(self):
        return "broken"

    @pytest.fixture
    def supports_check(self):
        return False
"""


@pytest.fixture
def broken_plugin_installed(pytester: pytest.Pytester) -> None:
    """Install ``brokenfmt`` as a distribution with a ``blockfmt.formats`` entry point."""
    site = pytester.mkdir("site")
    (site / "brokenfmt.py").write_text(BROKEN_PLUGIN)
    dist_info = site / "brokenfmt-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenfmt\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[blockfmt.formats]\nbroken = brokenfmt\n")
    pytester.syspathinsert(site)
    importlib.invalidate_caches()


def test_entry_point_makes_the_plugin_visible(broken_plugin_installed: None) -> None:
    from blockfmt.host import Host, get_plugin_manager

    host = Host(get_plugin_manager())
    assert host.formats["broken"].plugin_name == "broken"


def test_broken_plugin_fails_the_suite_readably(
    pytester: pytest.Pytester, broken_plugin_installed: None
) -> None:
    pytester.makepyfile(test_broken=SUITE_FOR_BROKEN)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:benchmark")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 5, result.stdout.str()
    result.stdout.fnmatch_lines_random(
        [
            "*FormatSpec of 'broken' has no description*",
            "*probe claims * as broken (score [[]100[]]): it is not its image*",
            "*read after write at * differs*",
            "*block_status(0, *) covers up to *, not *",
            "*image truncated to * bytes raised error: *",
        ]
    )
    failed = {line.split("::")[-1].split(" ")[0] for line in result.outlines if line.startswith("FAILED")}
    assert {
        "test_spec_is_registered_and_sane",
        "test_probe_leaves_other_formats_alone",
        "test_write_read_back_and_after_reopen",
        "test_block_status_covers_the_range_exactly",
        "test_truncated_file_gives_block_format_error_only",
    } <= failed, failed


def test_conforming_formats_pass_the_same_run(pytester: pytest.Pytester) -> None:
    """The same in-process run passes for raw, so the failures above are the plugin's own."""
    pytester.makepyfile(
        test_raw=textwrap.dedent(
            """
            import pytest
            from blockfmt.testing.conformance import AbstractFormatTests

            class TestRaw(AbstractFormatTests):
                @pytest.fixture
                def format_name(self):
                    return "raw"

                @pytest.fixture
                def supports_check(self):
                    return False

                @pytest.fixture
                def probe_fallback(self):
                    return True
            """
        )
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:benchmark", "-m", "not qemu")
    result.assert_outcomes(passed=15, deselected=1)
