"""Huge images: opening a 64 TiB dynamic VDI reads one sector, not its 256 MiB block map."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import blockfmt
from blockfmt_vdi.bmap import PAGE_ENTRIES
from blockfmt_vdi.create import plan_header

TIB = 1 << 40
SIZE = 64 * TIB
MAP_BYTES = SIZE // (1 << 20) * 4  # 256 MiB

PROBE = textwrap.dedent(
    """
    import resource, sys, time
    import blockfmt
    start = time.perf_counter()
    if sys.argv[2] == "open":
        with blockfmt.open(sys.argv[1]) as img:
            assert img.read_at(0, 4096) == bytes(4096)
            assert img.read_at(img.size - 4096, 4096) == bytes(4096)
            span = 16 << 30  # one map page each: the first and the last 16 GiB
            for offset in (0, img.size - span):
                extents = img.map(offset, span)
                assert len(extents) == 1 and extents[0].zero and not extents[0].data
    elapsed = time.perf_counter() - start
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, elapsed)
    """
)


def run_probe(path, mode):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), float(out[1])


def test_opening_a_64_tib_image_touches_only_the_pages_it_needs(tmp_path):
    """The map is a sparse file here except its first and last pages; the open must not read it all."""
    path = tmp_path / "huge.vdi"
    header = plan_header(SIZE, static=False)
    page = b"\xff" * (PAGE_ENTRIES * 4)
    with open(path, "wb") as f:
        f.write(header.pack())
        f.write(page)
        f.seek(header.offset_bmap + MAP_BYTES - len(page))
        f.write(page)
        f.truncate(header.offset_data)
    baseline_rss, _ = run_probe(path, "import")
    rss, elapsed = run_probe(path, "open")
    # open + reads + maps at both ends: only the pages touched are read, into a bounded cache
    assert rss - baseline_rss < 32 << 20, (rss, baseline_rss)
    assert elapsed < 20, elapsed
    with blockfmt.open(path) as img:
        assert img.size == SIZE
        assert len(img.driver.bmap._pages) <= 64
