"""Describe how two byte buffers differ, in a line, for test failures.

pytest's own explanation of ``assert a == b`` runs difflib over the reprs, which takes minutes for
megabyte buffers; the first differing offset is what a reader of a disk-image test needs anyway.
"""

from __future__ import annotations

__all__ = ["describe_byte_difference", "first_difference"]

Buffer = bytes | bytearray | memoryview
_CHUNK = 1 << 16
_SHOWN = 8


def first_difference(left: Buffer, right: Buffer) -> int | None:
    """Offset of the first byte where *left* and *right* differ (the shorter length if one is a
    prefix of the other), or None when they are equal."""
    a, b = memoryview(left).cast("B"), memoryview(right).cast("B")
    common = min(len(a), len(b))
    for start in range(0, common, _CHUNK):
        end = min(start + _CHUNK, common)
        if a[start:end] != b[start:end]:
            return next(i for i in range(start, end) if a[i] != b[i])
    return None if len(a) == len(b) else common


def describe_byte_difference(left: Buffer, right: Buffer) -> str:
    """One line: the sizes and the first differing offset with a few bytes of each side."""
    at = first_difference(left, right)
    if at is None:
        return "the buffers are equal"
    a, b = bytes(memoryview(left)[at : at + _SHOWN]), bytes(memoryview(right)[at : at + _SHOWN])
    return f"{len(left)} vs {len(right)} bytes, first difference at byte {at}: {a.hex()} != {b.hex()}"
