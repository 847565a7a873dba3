"""Compare the contents of two images (``qemu-img compare``).

Images of different sizes compare as if the shorter one were padded with zeros, which is how
``qemu-img compare`` judges them in its default (non-strict) mode: the extra part of the longer
image must read as zeros.

Ranges both images report as zero (from :meth:`blockfmt.Image.map`) are skipped without reading;
everything else is read in :data:`COMPARE_CHUNK` pieces into two reused buffers and compared with
one ``memcmp`` per piece (``bytearray`` equality; comparing ``memoryview`` objects is some 25
times slower, element by element). Only a piece that differs is searched for its first differing
byte, by bisection over slices, so no Python loop ever runs per byte.
"""

from __future__ import annotations

from collections.abc import Iterator

from .image import Image

__all__ = ["COMPARE_CHUNK", "compare", "first_status_mismatch"]

#: bytes read from each image per step
COMPARE_CHUNK = 4 << 20
#: bisection stops at runs this short and scans them directly
_BISECT_FLOOR = 64


def compare(a: Image, b: Image) -> int | None:
    """Return the first virtual offset where *a* and *b* read differently, or None if they match.

    The shorter image reads as zeros beyond its end.

    :raises BlockFormatError: when either image cannot be read.
    """
    end = max(a.size, b.size)
    zero_a = _zero_ranges(a)
    zero_b = _zero_ranges(b)
    buf_a = bytearray(COMPARE_CHUNK)
    buf_b = bytearray(COMPARE_CHUNK)
    for start, stop in _ranges_to_read(zero_a, zero_b, end):
        pos = start
        while pos < stop:
            n = min(COMPARE_CHUNK, stop - pos)
            _read_padded(a, pos, memoryview(buf_a)[:n])
            _read_padded(b, pos, memoryview(buf_b)[:n])
            same = buf_a == buf_b if n == COMPARE_CHUNK else buf_a[:n] == buf_b[:n]
            if not same:
                return pos + _first_difference(buf_a[:n], buf_b[:n])
            pos += n
    return None


def first_status_mismatch(a: Image, b: Image) -> int | None:
    """Return the first offset of the common part where the images' allocation status differs.

    Status is whether a range holds data and whether it reads as zeros (``qemu-img compare -s``).
    """
    common = min(a.size, b.size)
    if not common:
        return None
    ext_a, ext_b = iter(a.map(0, common)), iter(b.map(0, common))
    cur_a, cur_b = next(ext_a), next(ext_b)
    pos = 0
    while pos < common:
        if (cur_a.data, cur_a.zero) != (cur_b.data, cur_b.zero):
            return pos
        pos = min(cur_a.offset + cur_a.length, cur_b.offset + cur_b.length)
        if pos >= common:
            break
        if cur_a.offset + cur_a.length <= pos:
            cur_a = next(ext_a)
        if cur_b.offset + cur_b.length <= pos:
            cur_b = next(ext_b)
    return None


def _zero_ranges(image: Image) -> list[tuple[int, int]]:
    """``(start, stop)`` ranges known to read as zeros, the image's end onwards included."""
    ranges = [(e.offset, e.offset + e.length) for e in image.map() if e.zero]
    ranges.append((image.size, 1 << 64))
    return ranges


def _ranges_to_read(
    zero_a: list[tuple[int, int]], zero_b: list[tuple[int, int]], end: int
) -> Iterator[tuple[int, int]]:
    """Yield the parts of ``[0, end)`` not covered by the intersection of both zero range lists."""
    both_zero = []
    i = j = 0
    while i < len(zero_a) and j < len(zero_b):
        start = max(zero_a[i][0], zero_b[j][0])
        stop = min(zero_a[i][1], zero_b[j][1])
        if start < stop:
            both_zero.append((start, stop))
        if zero_a[i][1] < zero_b[j][1]:
            i += 1
        else:
            j += 1
    pos = 0
    for start, stop in both_zero:
        if start >= end:
            break
        if start > pos:
            yield pos, start
        pos = max(pos, stop)
    if pos < end:
        yield pos, end


def _read_padded(image: Image, offset: int, view: memoryview) -> None:
    """Fill *view* from *image* at *offset*, zeros beyond the image's end."""
    inside = max(0, min(len(view), image.size - offset))
    if inside:
        image.readinto_at(offset, view[:inside])
    if inside < len(view):
        view[inside:] = bytes(len(view) - inside)


def _first_difference(a: bytearray, b: bytearray) -> int:
    """Index of the first differing byte of two equal-length views known to differ."""
    lo, hi = 0, len(a)
    while hi - lo > _BISECT_FLOOR:
        mid = (lo + hi) // 2
        if a[lo:mid] != b[lo:mid]:
            hi = mid
        else:
            lo = mid
    return next(i for i in range(lo, hi) if a[i] != b[i])
