"""Large-buffer failures are explained by the first difference, quickly."""

from __future__ import annotations

import pytest

from blockfmt.testing.bytes_diff import describe_byte_difference, first_difference

pytest_plugins = ["pytester"]

MiB = 1 << 20


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (b"abc", b"abc", None),
        (b"abc", b"abd", 2),
        (b"ab", b"abc", 2),
        (bytes(MiB) + b"x", bytes(MiB) + b"y", MiB),
        (bytes(70000), bytes(65537) + b"\1" + bytes(4462), 65537),
    ],
)
def test_first_difference(left: bytes, right: bytes, expected: int | None) -> None:
    """The offset of the first differing byte, across chunk boundaries; the shorter length for prefixes."""
    assert first_difference(left, right) == expected


def test_description_names_sizes_offset_and_bytes() -> None:
    """One line with both sizes, the offset and a few bytes of each side."""
    text = describe_byte_difference(b"\0" * 10 + b"\xab", b"\0" * 10 + b"\xcd")
    assert text == "11 vs 11 bytes, first difference at byte 10: ab != cd"


def test_failed_comparison_of_megabyte_buffers_is_explained_quickly(pytester: pytest.Pytester) -> None:
    """The pytest11 plugin replaces difflib's minutes-long explanation with the first difference."""
    pytester.makepyfile(
        """
        def test_big():
            assert bytes(8 << 20) == bytes(4 << 20) + b"x" + bytes((4 << 20) - 1)
        """
    )
    # the plugin comes through its pytest11 entry point; a hang (difflib) would hit the timeout
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*byte buffers differ: 8388608 vs 8388608 bytes, first difference at byte 4194304*"]
    )
