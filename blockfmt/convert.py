"""Copy an open image into a new image of any format, keeping it sparse (``qemu-img convert``).

Only what the source says is there gets copied: :meth:`blockfmt.Image.map` tells which ranges hold
data, zero and unallocated ranges are skipped outright, and data ranges are read in large chunks
into one reused buffer whose all-zero granules are skipped too (a ``memcmp`` against a zero
buffer, never a per-byte loop). A fresh target reads as zeros everywhere, so what is skipped
reads back exactly as the source did, and ``qemu-img map`` of the result shows data only where
the source had some.

Where the source payload lies contiguously in a plain file and the target is raw, the non-zero
runs are written with :func:`os.copy_file_range` from the source file instead of from the buffer:
on a file system with reflinks (XFS, btrfs) the target then shares the source's blocks instead of
copying them, and elsewhere it costs what ``pwrite`` costs. The chunk is still read first, because
zero detection needs the bytes: without it, blocks the source allocated but filled with zeros
(qemu-io ``write -z`` on VDI or VHDX does that) would become data in the target, where ``qemu-img
convert`` leaves holes. Any refusal of the kernel falls back to writing the buffer.

A failed convert leaves no half-written target that could pass for complete. ``qemu-img
convert`` leaves its partial output behind; blockfmt instead builds a regular-file target under a
temporary name in the target's directory and renames it into place only after the last write and
flush, so an existing file at the target path survives a failed convert untouched (this needs room
for both while converting). Targets that are not regular files (block devices) are written in
place, and ranges the source leaves unallocated are explicitly zeroed there, because a device does
not read as zeros to begin with.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator

from .api import create
from .api import open as open_image
from .errors import BlockFormatError, BlockIOError
from .image import Image
from .raw import FORMAT_NAME as RAW_FORMAT

__all__ = ["convert"]

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

#: bytes read per request; large enough to amortise Python's per-call cost, small enough to stay
#: in the CPU cache between the read and the write
COPY_CHUNK = 4 * MiB
#: a target that allocates in clusters gets chunks of this many clusters (up to MAX_COPY_CHUNK), so
#: one write allocates several blocks in one metadata update (a VHDX log transaction with its
#: flushes costs more than the cache misses of a bigger buffer: 256 MiB raw->vhdx, 8 MiB blocks,
#: took 1.8 s with 4 MiB chunks and 0.9-1.4 s with 32 MiB)
CLUSTERS_PER_CHUNK = 4
MAX_COPY_CHUNK = 32 * MiB
#: smallest run checked for zeros inside a data chunk (qemu-img's ``-S`` default is 4 KiB; a coarser
#: granule costs fewer comparisons and loses little, since targets allocate whole clusters anyway)
ZERO_GRANULE = 64 * KiB
#: ``map`` is walked window by window so a huge sparse disk never holds one giant extent list and
#: progress moves while it is walked
MAP_WINDOW_MIN = 1 * GiB
#: the disk is cut into at most this many map windows
MAP_WINDOWS_MAX = 256
#: progress is reported when it advanced by at least this many percent (about 200 calls at most)
PROGRESS_STEP = 0.5

_ZEROS = memoryview(bytes(MAX_COPY_CHUNK))

ProgressCallback = Callable[[float], None]


def convert(
    source: Image,
    target_path: str,
    target_format: str,
    *,
    options: dict[str, str] | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Create *target_path* as a *target_format* image with *source*'s virtual size and contents.

    :param source: an open image (read-only is enough); it stays open.
    :param target_format: any installed format name (``raw``, ``vhdx``, ``vdi``, ...).
    :param options: the target format's create options (``-o``), as for :func:`blockfmt.create`.
    :param progress: called with the percentage done, 0.0 first and 100.0 last, monotonically
        increasing, a few hundred times at most.
    :raises InvalidOptionError: for a bad target option, with qemu-img's message.
    :raises UnsupportedFormatError: for an unknown target format.
    :raises BlockIOError: when a file cannot be read, written or renamed.
    :raises BlockFormatError: whatever the source or target format reports; the target path is
        then left as it was before the call (regular files).
    """
    final = os.path.realpath(os.fspath(target_path))
    reporter = _Progress(source.size, progress)
    if _is_special_file(final):
        _create_and_copy(source, final, target_format, options, reporter, zero_init=False)
    else:
        temp = _reserve_temp_name(final, os.fspath(target_path))
        try:
            _create_and_copy(source, temp, target_format, options, reporter, zero_init=True)
            os.replace(temp, final)
        except BaseException as err:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            if isinstance(err, OSError) and not isinstance(err, BlockFormatError):
                raise BlockIOError.from_os_error(err, f"Could not create '{target_path}'") from err
            raise
    reporter.finish()


def _is_special_file(path: str) -> bool:
    """True for an existing target that is not a regular file (a device): it is written in place."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise BlockIOError.from_os_error(err, f"Could not create '{path}'") from err


def _reserve_temp_name(final: str, shown: str) -> str:
    """Claim a unique name beside *final*, so the closing rename stays on one file system.

    :param shown: the target as the caller named it, for the error message (as qemu-img names it).
    """
    directory, name = os.path.split(final)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{name}.blockfmt-convert-", dir=directory or ".")
    except OSError as err:
        raise BlockIOError.from_os_error(err, f"Could not create '{shown}'") from err
    os.close(fd)
    return temp


def _create_and_copy(
    source: Image,
    path: str,
    target_format: str,
    options: dict[str, str] | None,
    reporter: _Progress,
    *,
    zero_init: bool,
) -> None:
    create(path, target_format, source.size, **dict(options or {}))
    with open_image(path, target_format, read_only=False) as target:
        _Copier(source, target, reporter, zero_init=zero_init).run()


class _Progress:
    """Turns bytes done into throttled, monotone percentages for the caller's callback."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self._total = total
        self._callback = callback
        self._reported = 0.0
        if callback is not None:
            callback(0.0)

    def advance_to(self, done: int) -> None:
        if self._callback is None or self._total == 0:
            return
        percent = min(100.0, 100.0 * done / self._total)
        if percent - self._reported >= PROGRESS_STEP and percent < 100.0:
            self._reported = percent
            self._callback(percent)

    def finish(self) -> None:
        if self._callback is not None:
            self._reported = 100.0
            self._callback(100.0)


class _Copier:
    """One copy of *source* into an already created, open *target* of the same size."""

    def __init__(self, source: Image, target: Image, reporter: _Progress, *, zero_init: bool) -> None:
        self._source = source
        self._target = target
        self._reporter = reporter
        self._zero_init = zero_init
        cluster = target.info().cluster_size or 0
        self._chunk = max(COPY_CHUNK, min(MAX_COPY_CHUNK, CLUSTERS_PER_CHUNK * cluster))
        self._buffer = bytearray(self._chunk)
        self._view = memoryview(self._buffer)
        self._source_fd, self._target_fd = self._copy_range_fds()

    def run(self) -> None:
        """Walk the source map window by window and copy every range that may hold data."""
        for offset, length, has_data, host_offset in self._ranges():
            if not has_data:
                if not self._zero_init:
                    self._target.write_zeroes(offset, length, unmap=True)
            else:
                self._copy(offset, length, host_offset)
            self._reporter.advance_to(offset + length)

    def _ranges(self) -> Iterator[tuple[int, int, bool, int | None]]:
        """Yield ``(offset, length, may_hold_data, host_offset)`` covering the whole disk in order.

        A range the format marks zero is skipped; an unallocated range that is not marked zero
        (a format without zero knowledge) is read and zero-detected like data.
        """
        size = self._source.size
        window = max(MAP_WINDOW_MIN, -(-size // MAP_WINDOWS_MAX))
        for start in range(0, size, window):
            for ext in self._source.map(start, min(window, size - start)):
                yield ext.offset, ext.length, not ext.zero, ext.host_offset if ext.data else None

    def _copy(self, offset: int, length: int, host_offset: int | None) -> None:
        """Read *length* bytes at *offset* chunk by chunk; write the granules that are not zero.

        :param host_offset: where the range lies contiguously in the source file, if it does.
        """
        end = offset + length
        view, buffer = self._view, self._buffer
        while offset < end:
            count = min(self._chunk, end - offset)
            self._source.readinto_at(offset, view[:count])
            if not buffer.startswith(_ZEROS[:count]):
                self._write_nonzero_runs(offset, count, host_offset)
            offset += count
            if host_offset is not None:
                host_offset += count
            self._reporter.advance_to(offset)

    def _write_nonzero_runs(self, offset: int, count: int, host_offset: int | None) -> None:
        """Write ``buffer[:count]`` to *offset*, leaving out aligned all-zero granules.

        Adjacent non-zero granules are written with one request.
        """
        buffer = self._buffer
        zero_granule = _ZEROS[:ZERO_GRANULE]
        run_start: int | None = None
        for pos in range(0, count, ZERO_GRANULE):
            is_zero = buffer.startswith(zero_granule[: count - pos], pos)
            if is_zero and run_start is not None:
                self._write_run(offset, run_start, pos, host_offset)
                run_start = None
            elif not is_zero and run_start is None:
                run_start = pos
        if run_start is not None:
            self._write_run(offset, run_start, count, host_offset)

    def _write_run(self, offset: int, start: int, end: int, host_offset: int | None) -> None:
        """Write ``buffer[start:end]`` to ``offset + start``: by the kernel where it can, else from memory."""
        done = 0
        if host_offset is not None:
            done = self._copy_file_range(offset + start, end - start, host_offset + start)
        if start + done < end:
            self._target.write_at(offset + start + done, self._view[start + done : end])

    # -- zero-copy path --------------------------------------------------------

    def _copy_range_fds(self) -> tuple[int | None, int | None]:
        """The two plain-file descriptors for ``copy_file_range``, or Nones when it cannot apply.

        It applies when the target is raw (virtual offset = file offset) and both files are
        regular files; the source format then says per extent where its payload lies.
        """
        if self._target.format != RAW_FORMAT or not hasattr(os, "copy_file_range"):
            return None, None
        try:
            source_fd = self._source.driver.file.fileno()
            target_fd = self._target.driver.file.fileno()
            regular = all(stat.S_ISREG(os.fstat(fd).st_mode) for fd in (source_fd, target_fd))
        except OSError:
            return None, None
        return (source_fd, target_fd) if regular else (None, None)

    def _copy_file_range(self, offset: int, length: int, host_offset: int) -> int:
        """Copy source file bytes at *host_offset* to target *offset* in the kernel.

        :returns: the bytes copied; fewer than *length* when the kernel refuses (the path is then
            switched off for the rest of the convert) or the source file ends early.
        """
        if self._source_fd is None or self._target_fd is None:
            return 0
        done = 0
        while done < length:
            try:
                moved = os.copy_file_range(
                    self._source_fd, self._target_fd, length - done, host_offset + done, offset + done
                )
            except OSError as err:
                if err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise BlockIOError.from_os_error(err, "Could not copy image data") from err
                self._source_fd = self._target_fd = None
                break
            if moved == 0:
                break
            done += moved
        return done
