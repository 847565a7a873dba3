"""blockfmt.convert: content, sparseness, progress and failure behaviour in every direction."""

from __future__ import annotations

import errno
import itertools
import os
import sys
import threading
import time
from pathlib import Path

import pytest

import blockfmt
import blockfmt.convert as blockfmt_convert
from blockfmt.convert import convert
from blockfmt.errors import BlockIOError, InvalidOptionError, UnsupportedFormatError
from blockfmt.testing.qemu import run_tool

from .layout import (
    DISK_SIZE,
    ZERO_RUN,
    MiB,
    allowed_data,
    blockfmt_data_ranges,
    build_source,
    cluster_size,
    content_digest,
    qemu_data_ranges,
    uncovered,
    widen,
)

FORMATS = ("raw", "vhdx", "vdi")
#: qemu-img 7.2 has no block status for VHDX (NOTES.md #6): it maps all of it as data
QEMU_MAPS_ALLOCATION = {"raw", "vdi"}


def require_format(fmt: str) -> None:
    """Skip while a format's plugin has not landed (the entry point is declared already)."""
    try:
        blockfmt.default_host().spec(fmt)
    except UnsupportedFormatError:
        pytest.skip(f"format plugin '{fmt}' provides no format yet")


def converted(tmp_path: Path, src_fmt: str, dst_fmt: str, **kwargs: object) -> tuple[Path, Path]:
    """Build the layout as *src_fmt*, convert it to *dst_fmt*; return both paths."""
    require_format(src_fmt)
    require_format(dst_fmt)
    src, dst = tmp_path / f"src.{src_fmt}", tmp_path / f"dst.{dst_fmt}"
    build_source(src, src_fmt)
    with blockfmt.open(src, src_fmt) as img:
        convert(img, str(dst), dst_fmt, **kwargs)  # type: ignore[arg-type]
    return src, dst


@pytest.mark.parametrize("dst_fmt", FORMATS)
@pytest.mark.parametrize("src_fmt", FORMATS)
def test_convert_preserves_contents_and_size(tmp_path: Path, src_fmt: str, dst_fmt: str) -> None:
    """The target has the source's virtual size and the same bytes everywhere."""
    src, dst = converted(tmp_path, src_fmt, dst_fmt)
    with blockfmt.open(dst, dst_fmt) as img:
        assert img.size == DISK_SIZE
    assert content_digest(dst, dst_fmt) == content_digest(src, src_fmt)


@pytest.mark.parametrize("dst_fmt", FORMATS)
@pytest.mark.parametrize("src_fmt", FORMATS)
def test_convert_keeps_target_sparse(tmp_path: Path, src_fmt: str, dst_fmt: str) -> None:
    """blockfmt's map of the target has data only within the source's data, per target cluster."""
    src, dst = converted(tmp_path, src_fmt, dst_fmt)
    allowed = allowed_data(blockfmt_data_ranges(src, src_fmt), dst, dst_fmt)
    target_data = blockfmt_data_ranges(dst, dst_fmt)
    assert target_data, "the target lost its data"
    assert uncovered(target_data, allowed) == []


@pytest.mark.qemu
@pytest.mark.parametrize("dst_fmt", FORMATS)
@pytest.mark.parametrize("src_fmt", FORMATS)
def test_convert_output_is_identical_and_sparse_for_qemu(
    tmp_path: Path, qemu_img: str, src_fmt: str, dst_fmt: str
) -> None:
    """qemu-img compare calls the images identical, check is clean, map shows no stray data."""
    src, dst = converted(tmp_path, src_fmt, dst_fmt)
    compare = run_tool([qemu_img, "compare", "-f", src_fmt, "-F", dst_fmt, str(src), str(dst)])
    assert (compare.returncode, compare.stdout) == (0, "Images are identical.\n"), compare.output
    if dst_fmt != "raw":
        check = run_tool([qemu_img, "check", "-f", dst_fmt, str(dst)])
        assert check.returncode == 0, check.output
        assert "No errors were found on the image." in check.stdout
    if dst_fmt in QEMU_MAPS_ALLOCATION:
        allowed = allowed_data(blockfmt_data_ranges(src, src_fmt), dst, dst_fmt)
        assert uncovered(qemu_data_ranges(qemu_img, dst, dst_fmt), allowed) == []


@pytest.mark.parametrize("dst_fmt", FORMATS)
def test_zero_filled_data_is_not_copied(tmp_path: Path, dst_fmt: str) -> None:
    """A run the raw source holds as written zeros stays a hole / unallocated in the target.

    For raw targets this covers the clone path, for VHDX 1 MiB blocks make it visible.
    """
    options = {"block_size": "1M"} if dst_fmt == "vhdx" else None
    src, dst = converted(tmp_path, "raw", dst_fmt, options=options)
    assert uncovered([ZERO_RUN], blockfmt_data_ranges(src, "raw")) == []  # the source has it as data
    assert not [r for r in blockfmt_data_ranges(dst, dst_fmt) if r[0] < ZERO_RUN[1] and r[1] > ZERO_RUN[0]]


def test_buffered_fallback_when_the_file_system_cannot_clone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where cloning is refused raw->raw writes from memory, asks once only, and skips zero runs."""
    calls = []

    def refuse(*args: int) -> bool:
        calls.append(args)
        return False

    monkeypatch.setattr("blockfmt.convert.clone_file_range", refuse)
    src, dst = converted(tmp_path, "raw", "raw")
    assert len(calls) == 1, "the clone path was not tried, or tried again after a refusal"
    assert content_digest(dst, "raw") == content_digest(src, "raw")
    data = blockfmt_data_ranges(dst, "raw")
    assert not [r for r in data if r[0] < ZERO_RUN[1] and r[1] > ZERO_RUN[0]]


@pytest.mark.parametrize("src_fmt", FORMATS)
def test_raw_target_is_cloned_from_the_source_payload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, src_fmt: str
) -> None:
    """On a reflink file system every non-zero run is cloned from where the source format keeps it.

    The stand-in clone copies the bytes it is pointed at, so a wrong host offset (VHDX and VDI
    keep blocks elsewhere than at their virtual offset) shows up as wrong content.
    """
    require_format(src_fmt)
    cloned: list[tuple[object, int]] = []

    def clone_by_copy(
        source_fd: int, source_offset: int, target_fd: int, target_offset: int, length: int
    ) -> bool:
        cloned.append((target_offset, length))
        os.pwrite(target_fd, os.pread(source_fd, length, source_offset), target_offset)
        return True

    monkeypatch.setattr("blockfmt.convert.clone_file_range", clone_by_copy)
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (cloned.append(("flush", fd)), real_fdatasync(fd)))
    src, dst = converted(tmp_path, src_fmt, "raw")
    assert cloned[-1][0] == "flush", "the clones were not flushed (the Python API's convert flushes)"
    cloned = [c for c in cloned if c[0] != "flush"]
    assert cloned
    assert content_digest(dst, "raw") == content_digest(src, src_fmt)
    assert not [r for r in cloned if r[0] < ZERO_RUN[1] and r[0] + r[1] > ZERO_RUN[0]]


@pytest.mark.parametrize("src_fmt", ["vhdx", "vdi"])
def test_file_holes_in_allocated_blocks_are_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, src_fmt: str
) -> None:
    """Blocks that were allocated but only partly written are read only where the file has data.

    blockfmt leaves the unwritten part of a new block as a file hole, so the source's 8 MiB
    (VHDX) or 1 MiB (VDI) blocks hold about 3 MiB of data in all; reading whole blocks would
    read 32 MiB (VHDX) or 6 MiB (VDI).
    """
    require_format(src_fmt)
    options = {"block_size": str(8 * MiB)} if src_fmt == "vhdx" else {}
    src, dst = tmp_path / f"src.{src_fmt}", tmp_path / "dst.raw"
    build_source(src, src_fmt, **options)
    read = 0
    with blockfmt.open(src, src_fmt) as img:
        real_readinto = img.driver.readinto

        def counting_readinto(offset: int, buf: memoryview) -> None:
            nonlocal read
            read += len(buf)
            real_readinto(offset, buf)

        monkeypatch.setattr(img.driver, "readinto", counting_readinto)
        convert(img, str(dst), "raw")
    assert content_digest(dst, "raw") == content_digest(src, src_fmt)
    assert 3 * MiB < read <= 4 * MiB


@pytest.mark.parametrize("dst_fmt", FORMATS)
def test_progress_is_monotone_from_0_to_100(tmp_path: Path, dst_fmt: str) -> None:
    """Progress starts at 0.0, never goes back, ends at 100.0 and is not called too often."""
    seen: list[float] = []
    converted(tmp_path, "raw", dst_fmt, progress=seen.append)
    assert seen[0] == 0.0 and seen[-1] == 100.0
    assert all(a < b for a, b in itertools.pairwise(seen))
    assert 2 < len(seen) <= 300


def test_progress_on_an_empty_disk(tmp_path: Path) -> None:
    """A zero-byte source still reports 0 and 100."""
    src, dst = tmp_path / "empty.raw", tmp_path / "out.raw"
    blockfmt.create(src, "raw", 0)
    seen: list[float] = []
    with blockfmt.open(src, "raw") as img:
        convert(img, str(dst), "raw", progress=seen.append)
    assert seen == [0.0, 100.0]
    assert dst.stat().st_size == 0


def test_existing_target_is_replaced(tmp_path: Path) -> None:
    """Converting over an existing file replaces it completely (no stale tail)."""
    dst = tmp_path / "dst.raw"
    dst.write_bytes(b"\xff" * (DISK_SIZE + MiB))
    src, _ = converted(tmp_path, "raw", "raw")
    assert dst.stat().st_size == DISK_SIZE
    assert content_digest(dst, "raw") == content_digest(src, "raw")


def _leftovers(directory: Path, *keep: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p not in keep)


def test_bad_option_leaves_existing_target_untouched(tmp_path: Path) -> None:
    """An invalid create option fails with qemu-img's message and changes nothing on disk."""
    src, dst = tmp_path / "src.raw", tmp_path / "dst.raw"
    build_source(src, "raw")
    dst.write_bytes(b"precious")
    with (
        blockfmt.open(src, "raw") as img,
        pytest.raises(InvalidOptionError, match="Invalid parameter 'bogus'"),
    ):
        convert(img, str(dst), "raw", options={"bogus": "1"})
    assert dst.read_bytes() == b"precious"
    assert _leftovers(tmp_path, src, dst) == []


def _count_reads(img: blockfmt.Image, monkeypatch: pytest.MonkeyPatch, *, fail_at: int = 0) -> list[int]:
    """Count the source driver's reads in the one-element list returned; the *fail_at*-th fails
    with EIO (0: none)."""
    count = [0]
    real_readinto = img.driver.readinto

    def counted_readinto(offset: int, buf: memoryview) -> None:
        count[0] += 1
        if count[0] == fail_at:
            raise BlockIOError("Could not read image: Input/output error", errno=errno.EIO)
        real_readinto(offset, buf)

    monkeypatch.setattr(img.driver, "readinto", counted_readinto)
    return count


def _chunks_of_data(path: Path, count: int) -> None:
    """Write *count* chunks to *path*, chunk *i* filled with the byte ``i + 1``."""
    with path.open("wb") as f:
        for index in range(count):
            f.write(bytes([index + 1]) * blockfmt_convert.COPY_CHUNK)


def test_read_error_mid_copy_leaves_existing_target_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source that fails halfway raises its BlockIOError; the old target and the dir stay clean.

    Reading stops there: only a read another lane had already taken may still run.
    """
    src, dst = tmp_path / "src.raw", tmp_path / "dst.raw"
    build_source(src, "raw")
    dst.write_bytes(b"precious")
    with blockfmt.open(src, "raw") as img:
        reads = _count_reads(img, monkeypatch, fail_at=2)
        with pytest.raises(BlockIOError, match="Input/output error"):
            convert(img, str(dst), "raw")
    assert 2 <= reads[0] <= 1 + blockfmt_convert.COPY_LANES
    assert dst.read_bytes() == b"precious"
    assert _leftovers(tmp_path, src, dst) == []


def test_write_error_mid_copy_stops_every_lane_before_convert_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target that fails on its second chunk raises its error; no chunk is written after it,
    the other lane reads at most the chunk it took, no lane thread is left when convert returns,
    the old target stays."""
    src, dst = tmp_path / "src.raw", tmp_path / "dst.raw"
    _chunks_of_data(src, 16)  # so a lane could run far ahead
    dst.write_bytes(b"precious")
    real_write_chunk = blockfmt_convert._Copier._write_chunk
    writes = 0

    def failing_write_chunk(self: object, *args: object) -> None:
        nonlocal writes
        writes += 1
        if writes == 2:
            raise BlockIOError("Could not write image: No space left on device", errno=errno.ENOSPC)
        real_write_chunk(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(blockfmt_convert._Copier, "_write_chunk", failing_write_chunk)
    with blockfmt.open(src, "raw") as img:
        reads = _count_reads(img, monkeypatch)
        with pytest.raises(BlockIOError, match="No space left on device"):
            convert(img, str(dst), "raw")
        assert not [t for t in threading.enumerate() if t.name == "blockfmt-convert-lane"]
        settled = reads[0]
    assert writes == 2
    assert 2 <= settled <= 1 + blockfmt_convert.COPY_LANES  # each other lane read one chunk at most
    assert dst.read_bytes() == b"precious"
    assert _leftovers(tmp_path, src, dst) == []


def _slow_chunk(monkeypatch: pytest.MonkeyPatch, index: int) -> None:
    """Make the lane that writes chunk *index* take 0.2 s longer than the others."""
    real_write_chunk = blockfmt_convert._Copier._write_chunk

    def write_chunk(self: blockfmt_convert._Copier, chunk: blockfmt_convert._Chunk, *args: object) -> None:
        if chunk.offset == index * blockfmt_convert.COPY_CHUNK:
            time.sleep(0.2)
        real_write_chunk(self, chunk, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(blockfmt_convert._Copier, "_write_chunk", write_chunk)


@pytest.mark.parametrize("dst_fmt", ["vhdx", "vdi"])
def test_formatted_targets_allocate_in_disk_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dst_fmt: str
) -> None:
    """A target with metadata is written in disk order even when a lane lags on the first
    chunk: its blocks lie in the file in the order of the disk, as qemu-img lays them out."""
    require_format(dst_fmt)
    src, dst = tmp_path / "src.raw", tmp_path / f"dst.{dst_fmt}"
    _chunks_of_data(src, 8)
    _slow_chunk(monkeypatch, 0)
    options = {"block_size": str(MiB)} if dst_fmt == "vhdx" else {}  # 4 MiB chunks, as VDI's
    with blockfmt.open(src, "raw") as img:
        convert(img, str(dst), dst_fmt, options=options)
    assert content_digest(dst, dst_fmt) == content_digest(src, "raw")
    chunk = blockfmt_convert.COPY_CHUNK
    with blockfmt.open(dst, dst_fmt) as img:
        hosts = [img.map(offset, chunk)[0].host_offset for offset in range(0, 8 * chunk, chunk)]
    assert None not in hosts
    assert hosts == sorted(hosts)  # type: ignore[type-var]


def test_progress_counts_only_written_chunks_when_a_lane_lags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Progress never reports a part of the disk as done while a chunk inside it is unwritten,
    even when the lane holding one (the third here) lags behind the other."""
    src, dst = tmp_path / "src.raw", tmp_path / "dst.raw"
    chunk = blockfmt_convert.COPY_CHUNK
    _chunks_of_data(src, 8)
    _slow_chunk(monkeypatch, 2)
    unwritten_when_reported: list[tuple[float, list[int]]] = []

    def progress(percent: float) -> None:
        if 0.0 < percent < 100.0:
            (temp,) = _leftovers(tmp_path, src)  # the target, under its temporary name
            data = (tmp_path / temp).read_bytes()
            done = int(8 * chunk * percent / 100)
            missing = [i for i in range(8) if (i + 1) * chunk <= done and data[i * chunk] != i + 1]
            unwritten_when_reported.append((percent, missing))

    with blockfmt.open(src, "raw") as img:
        convert(img, str(dst), "raw", progress=progress)
    assert unwritten_when_reported, "no progress was reported while copying"
    assert [missing for _, missing in unwritten_when_reported] == [[]] * len(unwritten_when_reported)
    assert content_digest(dst, "raw") == content_digest(src, "raw")


def test_unknown_target_format_creates_nothing(tmp_path: Path) -> None:
    """An unknown format name is an UnsupportedFormatError and leaves no file behind."""
    src = tmp_path / "src.raw"
    build_source(src, "raw")
    with blockfmt.open(src, "raw") as img, pytest.raises(UnsupportedFormatError):
        convert(img, str(tmp_path / "dst.x"), "no-such-format")
    assert _leftovers(tmp_path, src) == []


def test_missing_target_directory_is_a_block_io_error(tmp_path: Path) -> None:
    """An OSError on the target side surfaces as BlockIOError naming the target."""
    src = tmp_path / "src.raw"
    build_source(src, "raw")
    target = tmp_path / "absent" / "dst.raw"
    with blockfmt.open(src, "raw") as img, pytest.raises(BlockIOError, match="Could not create") as info:
        convert(img, str(target), "raw")
    assert info.value.errno == errno.ENOENT


@pytest.mark.qemu
@pytest.mark.parametrize("src_fmt", ["vhdx", "vdi"])
def test_image_written_by_qemu_converts_to_raw(
    tmp_path: Path, qemu_img: str, qemu_io: str, src_fmt: str
) -> None:
    """An image qemu-img created and qemu-io wrote converts to the raw qemu-img convert makes."""
    require_format(src_fmt)
    src, mine, theirs = tmp_path / f"src.{src_fmt}", tmp_path / "mine.raw", tmp_path / "theirs.raw"
    assert run_tool([qemu_img, "create", "-f", src_fmt, str(src), str(DISK_SIZE)]).returncode == 0
    writes = ["write -P 0x5a 1M 3M", "write -P 0xc3 17409k 70k", "write -z 40M 1M", "write -P 0x11 63M 1M"]
    io = run_tool([qemu_io, "-f", src_fmt, *[a for w in writes for a in ("-c", w)], str(src)])
    assert io.returncode == 0, io.output
    assert run_tool([qemu_img, "convert", "-f", src_fmt, "-O", "raw", str(src), str(theirs)]).returncode == 0
    with blockfmt.open(src, src_fmt) as img:
        convert(img, str(mine), "raw")
    assert content_digest(mine, "raw") == content_digest(theirs, "raw")
    written = widen([(1 * MiB, 4 * MiB), (17409 * 1024, 17479 * 1024), (63 * MiB, 64 * MiB)], MiB)
    allowed = allowed_data(widen(written, cluster_size(src, src_fmt)), mine, "raw")
    assert uncovered(qemu_data_ranges(qemu_img, mine, "raw"), allowed) == []


@pytest.mark.qemu
def test_hyper_v_sample_converts_to_sparse_raw(tmp_path: Path, qemu_img: str, sample_image) -> None:
    """064's Hyper-V image: 0xa5 in 0-33 MiB, 0x96 in 33-66 MiB, zeros after; raw output sparse."""
    require_format("vhdx")
    src, dst = sample_image("iotest-dynamic-1G.vhdx"), tmp_path / "out.raw"
    with blockfmt.open(src, "vhdx") as img:
        convert(img, str(dst), "raw")
    with open(dst, "rb") as f:
        assert f.read(33 * MiB) == b"\xa5" * (33 * MiB)
        assert f.read(33 * MiB) == b"\x96" * (33 * MiB)
    assert dst.stat().st_size == 1 << 30
    assert (
        uncovered(qemu_data_ranges(qemu_img, dst, "raw"), widen([(0, 66 * MiB)], cluster_size(src, "vhdx")))
        == []
    )
    compare = run_tool([qemu_img, "compare", "-f", "vhdx", "-F", "raw", str(src), str(dst)])
    assert compare.returncode == 0, compare.output


@pytest.mark.parametrize("dst_fmt", FORMATS)
def test_cli_convert_matches_the_api(tmp_path: Path, dst_fmt: str) -> None:
    """``blockfmt-img convert -p`` writes the same image the API does, and shows 100% at the end."""
    require_format(dst_fmt)
    src, api_out = converted(tmp_path, "raw", dst_fmt)
    cli_out = tmp_path / f"cli.{dst_fmt}"
    script = Path(sys.executable).with_name("blockfmt-img")
    result = run_tool([str(script), "convert", "-p", "-f", "raw", "-O", dst_fmt, str(src), str(cli_out)])
    assert result.returncode == 0, result.output
    assert "(100.00/100%)" in result.stdout
    assert content_digest(cli_out, dst_fmt) == content_digest(api_out, dst_fmt) == content_digest(src, "raw")
    assert blockfmt_data_ranges(cli_out, dst_fmt) == blockfmt_data_ranges(api_out, dst_fmt)
