"""Copy an open image into a new image of any format, keeping it sparse (``qemu-img convert``).

Only what the source says is there gets copied: :meth:`blockfmt.Image.map` tells which ranges hold
data, zero and unallocated ranges are skipped outright, and data ranges are read in large chunks
into two reused buffers whose all-zero granules are skipped too (a ``memcmp`` against a zero
buffer, never a per-byte loop). A fresh target reads as zeros everywhere, so what is skipped
reads back exactly as the source did, and ``qemu-img map`` of the result shows data only where
the source had some.

Where the source payload lies contiguously in a plain file and the target's format keeps no
metadata (raw), the target's non-zero runs are cloned from the source file (``FICLONERANGE``): on
a file system with reflinks (XFS, btrfs) the target then shares the source's blocks instead of
copying them (1 GiB on XFS: 0.13-0.24 s instead of 0.67 s). Elsewhere the first refusal switches
cloning off, and runs are written from the buffer that was read anyway: ``copy_file_range``, which
would copy page by page in the kernel on ext4 or tmpfs, cost more than that one ``pwrite`` (tmpfs,
1 GiB: 0.65-2.0 s against 0.55 s). The chunk is always read first, because zero detection needs
the bytes: without it, blocks the source allocated but filled with zeros (qemu-io ``write -z`` on
VDI or VHDX does that) would become data in the target, where ``qemu-img convert`` leaves holes.

The two buffers are anonymous memory maps, page aligned (and backed by huge pages where the
kernel offers them), not ``bytearray`` objects: a ``bytearray``'s bytes start 16 bytes into a
page, and the kernel's copies into and out of a misaligned buffer cost far more. Measured on
tmpfs, 1 GiB raw to raw, system time fell from 1.5-1.8 s to 0.95-1.1 s (``qemu-img convert``:
1.05-1.25 s); the data path's own Python work is a few hundred calls per GiB. Zero detection
asks ``bytes.startswith`` of a zero buffer, a ``memcmp`` that stops at the first non-zero byte.

Two things overlap what would otherwise wait on each other. Two lanes (threads) copy chunk after
chunk, so one reads while the other writes (see :class:`_Copier`). And after every chunk the
target's writeback is started (:meth:`blockfmt.Image.start_writeback`), so the device writes
while the copy goes on; without it the closing flush found the whole output dirty and took half
of the convert's time. Measured on ext4, 1 GiB VHDX to raw, medians of 6: 0.93 s with neither,
0.77 s with writeback, 0.63 s with both (``qemu-img convert -t writeback``: 1.05 s).

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
import mmap
import os
import stat
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .api import create
from .api import open as open_image
from .cache import CacheMode
from .driver import Extent
from .errors import BlockIOError
from .fileio import clone_file_range
from .host import default_host
from .image import Image
from .options import CreateOptions, coerce_create_options
from .progress import Progress, ProgressCallback
from .replace import replaced_atomically, written_in_place

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

#: chunks worked on at once, each by its own thread with its own buffer (the calling thread is one)
COPY_LANES = 2

#: compared against with ``_ZEROS.startswith(view)``: bytes take any buffer as the prefix
_ZEROS = bytes(MAX_COPY_CHUNK)


def convert(
    source: Image,
    target_path: str,
    target_format: str,
    *,
    options: Mapping[str, Any] | CreateOptions | None = None,
    progress: ProgressCallback | None = None,
    cache: CacheMode = CacheMode.WRITEBACK,
) -> None:
    """Create *target_path* as a *target_format* image with *source*'s virtual size and contents.

    :param source: an open image (read-only is enough); it stays open.
    :param target_format: any installed format name (``raw``, ``vhdx``, ``vdi``, ...).
    :param options: the target format's create options (``-o``), as for :func:`blockfmt.create`:
        keywords, or typed already.
    :param progress: called with the percentage done, 0.0 first and 100.0 last, monotonically
        increasing, a few hundred times at most.
    :param cache: the target's cache mode. The default, ``writeback``, makes the target durable
        before it is renamed into place; ``unsafe`` (``qemu-img convert``'s default) leaves the
        data to the OS's writeback: faster, but after a crash the target may be incomplete.
    :raises InvalidOptionError: for a bad target option, with qemu-img's message.
    :raises UnsupportedFormatError: for an unknown target format.
    :raises BlockIOError: when a file cannot be read, written or renamed.
    :raises BlockFormatError: whatever the source or target format reports; the target path is
        then left as it was before the call (regular files).
    """
    if not isinstance(options, CreateOptions):
        options = coerce_create_options(default_host().spec(target_format), options or {})
    final = os.path.realpath(os.fspath(target_path))
    reporter = Progress(source.size, progress)
    if written_in_place(final):
        _create_and_copy(source, final, target_format, options, reporter, cache, zero_init=False)
    else:
        with replaced_atomically(final, shown=os.fspath(target_path)) as temp:
            _create_and_copy(source, temp, target_format, options, reporter, cache, zero_init=True)
    reporter.finish()


def _create_and_copy(
    source: Image,
    path: str,
    target_format: str,
    options: CreateOptions,
    reporter: Progress,
    cache: CacheMode,
    *,
    zero_init: bool,
) -> None:
    create(path, target_format, source.size, options, in_place=True)
    with open_image(path, target_format, read_only=False, cache=cache) as target:
        _Copier(source, target, reporter, zero_init=zero_init).run()


@dataclass(frozen=True)
class _Chunk:
    """One piece of the copy: at most a buffer's worth of a range from the source map."""

    offset: int
    length: int
    #: False where the range reads as zeros (the source format says so, or the source file has a
    #: hole there): nothing to read
    may_hold_data: bool
    #: where the chunk lies contiguously in the source file, if it does
    host_offset: int | None


class _Stopped(Exception):
    """Raised in a lane waiting for its turn when another lane has failed."""


class _Copier:
    """One copy of *source* into an already created, open *target* of the same size.

    The disk is cut into chunks (:meth:`_chunks`), numbered in disk order, and worked on by
    :data:`COPY_LANES` lanes: the calling thread and helper threads, each with its own buffer,
    each taking the next chunk, reading it, zero-detecting it and writing it when its turn comes.
    Reads go through the source image and writes through the target image, whose locks serialize
    them, so one lane reads while the other writes, as ``qemu-img convert`` keeps requests in
    flight, and each lane goes on by itself instead of waiting for another thread to hand it
    work (1 GiB raw->raw beside two CPU-bound processes, rotated order, medians of 10-12: one
    reading and one writing thread 1.73 s on ext4 and 1.83 s on tmpfs, two lanes 1.50 s and
    1.75 s, ``qemu-img`` 1.28 s and 1.31 s).

    Writes keep disk order, so a target's blocks are allocated in the order ``qemu-img`` allocates
    them and progress only ever counts chunks that are written. Letting the lanes write a raw
    file at once, in any order, was tried: the kernel serializes writes to one file on its inode
    lock, and the waiting writer spins (``rwsem_spin_on_owner``, 23 % of the CPU time on tmpfs:
    1.61 s of CPU against 1.24 s, for the same wall time).

    An error in any lane stops the others and is raised in the calling thread after every lane
    has returned: no read or write outlives the call.
    """

    def __init__(self, source: Image, target: Image, reporter: Progress, *, zero_init: bool) -> None:
        self._source = source
        self._target = target
        self._reporter = reporter
        self._zero_init = zero_init
        cluster = target.info().cluster_size or 0
        self._chunk_size = max(COPY_CHUNK, min(MAX_COPY_CHUNK, CLUSTERS_PER_CHUNK * cluster))
        self._source_file = source.driver.host_file()
        self._target_file = target.driver.host_file()
        self._clone_fds = self._find_clone_fds()
        #: only a target that will be flushed gains from writing back early (not ``unsafe``)
        self._flushed_at_close = not target.cache.ignores_flush
        self._todo = enumerate(self._chunks())
        self._taking = threading.Lock()
        #: guards what follows; notified when the turn moves or a lane fails
        self._turn_changed = threading.Condition()
        #: number of the next chunk to write; every chunk before it is written
        self._turn = 0
        self._error: BaseException | None = None

    def run(self) -> None:
        """Copy every chunk; a lane's error is raised here once every lane has returned."""
        helpers = [
            threading.Thread(target=self._helper_lane, name="blockfmt-convert-lane", daemon=True)
            for _ in range(COPY_LANES - 1)
        ]
        for helper in helpers:
            helper.start()
        try:
            self._lane()
        except _Stopped:
            pass
        except BaseException as err:  # an error, or an interrupt: the helpers stop too
            self._fail(err)
            raise
        finally:
            for helper in helpers:
                helper.join()
        if self._error is not None:
            raise self._error

    def _helper_lane(self) -> None:
        """A lane in a thread of its own, which hands its error to the calling thread's run()."""
        try:
            self._lane()
        except _Stopped:
            pass
        except BaseException as err:
            self._fail(err)

    def _fail(self, err: BaseException) -> None:
        """Stop every lane; the first error recorded is the one run() raises for a helper."""
        with self._turn_changed:
            if self._error is None:
                self._error = err
            self._turn_changed.notify_all()

    def _lane(self) -> None:
        """Take chunks until none is left, each read into this lane's buffer and written."""
        buffer = _aligned_buffer(self._chunk_size)
        while True:
            with self._taking:
                if self._error is not None:
                    raise _Stopped
                index, chunk = next(self._todo, (-1, None))
            if chunk is None:
                return
            view = None
            if chunk.may_hold_data:
                view = buffer[: chunk.length]
                self._source.readinto_at(chunk.offset, view)
            self._wait_for_turn(index)
            self._write_chunk(chunk, view)
            self._pass_turn(chunk.offset + chunk.length)

    def _wait_for_turn(self, index: int) -> None:
        """Return once every chunk before chunk *index* is written; raise _Stopped if a lane fails."""
        with self._turn_changed:
            while self._turn != index:
                if self._error is not None:
                    raise _Stopped
                self._turn_changed.wait()

    def _pass_turn(self, written_to: int) -> None:
        """Report the disk written up to *written_to* (still in turn, so in order) and hand the
        turn to the next chunk."""
        self._reporter.advance_to(written_to)
        with self._turn_changed:
            self._turn += 1
            self._turn_changed.notify_all()

    def _chunks(self) -> Iterator[_Chunk]:
        """Cut the source map, walked window by window, into chunks covering the disk in order."""
        size = self._source.size
        window = max(MAP_WINDOW_MIN, -(-size // MAP_WINDOWS_MAX))
        for start in range(0, size, window):
            for ext in self._source.map(start, min(window, size - start)):
                for piece in self._pieces(ext):
                    if not piece.may_hold_data:
                        yield piece
                        continue
                    for pos in range(0, piece.length, self._chunk_size):
                        host = None if piece.host_offset is None else piece.host_offset + pos
                        length = min(self._chunk_size, piece.length - pos)
                        yield _Chunk(piece.offset + pos, length, True, host)

    def _pieces(self, ext: Extent) -> Iterator[_Chunk]:
        """What of an extent must be read: nothing of a range the format marks zero, nor of
        holes in the source file under a data extent; the rest is read and zero-detected.

        Skipping file holes matters for blocks that were allocated but only partly written (a
        16 MiB VHDX block holding 8 MiB of data is half hole); ``qemu-img`` 7.2 reads those.
        An unallocated range that is not marked zero (a format without zero knowledge) is read, and
        so is data a backing file holds (its host offset is in another file than the source's).
        """
        if ext.zero:
            yield _Chunk(ext.offset, ext.length, False, None)
        elif not ext.data or ext.host_offset is None or ext.depth or self._source_file is None:
            yield _Chunk(ext.offset, ext.length, True, None)
        else:
            delta = ext.offset - ext.host_offset
            for host, length, is_data in self._source_file.data_runs(
                ext.host_offset, ext.host_offset + ext.length
            ):
                yield _Chunk(host + delta, length, is_data, host if is_data else None)

    def _write_chunk(self, chunk: _Chunk, buffer: memoryview | None) -> None:
        """Write what the target needs of a chunk whose bytes (if it may hold data) are in *buffer*."""
        if buffer is None:
            if not self._zero_init:
                self._target.write_zeroes(chunk.offset, chunk.length, unmap=True)
        elif not _ZEROS.startswith(buffer[: chunk.length]):
            self._write_nonzero_runs(chunk, buffer)
            if self._flushed_at_close:
                self._target.start_writeback()

    def _write_nonzero_runs(self, chunk: _Chunk, buffer: memoryview) -> None:
        """Write ``buffer[:chunk.length]`` to the chunk's offset, leaving out aligned zero granules.

        Adjacent non-zero granules are written with one request.
        """
        run_start: int | None = None
        for pos in range(0, chunk.length, ZERO_GRANULE):
            is_zero = _ZEROS.startswith(buffer[pos : min(pos + ZERO_GRANULE, chunk.length)])
            if is_zero and run_start is not None:
                self._write_run(chunk, buffer, run_start, pos)
                run_start = None
            elif not is_zero and run_start is None:
                run_start = pos
        if run_start is not None:
            self._write_run(chunk, buffer, run_start, chunk.length)

    def _write_run(self, chunk: _Chunk, buffer: memoryview, start: int, end: int) -> None:
        """Write ``buffer[start:end]`` to ``chunk.offset + start``: cloned from the source where
        the file system can share blocks, else from memory."""
        offset = chunk.offset + start
        if chunk.host_offset is not None and self._clone_fds is not None:
            source_fd, target_fd = self._clone_fds
            try:
                if clone_file_range(source_fd, chunk.host_offset + start, target_fd, offset, end - start):
                    assert self._target_file is not None  # (it gave target_fd)
                    self._target_file.changed_externally()  # the closing flush must not be skipped
                    return
            except OSError as err:
                raise BlockIOError.from_os_error(err, "Could not copy image data") from err
            self._clone_fds = None  # the file system cannot; do not ask again for every run
        self._target.write_at(offset, buffer[start:end])

    def _find_clone_fds(self) -> tuple[int, int] | None:
        """The source and target file descriptors for cloning, or None when it cannot apply.

        It applies when the target's format keeps no metadata (virtual offset = file offset) and
        both files are regular files; the source format then says per extent where its payload lies.
        """
        target_file = self._target_file
        if not self._target.spec.data_only or self._source_file is None or target_file is None:
            return None
        try:
            source_fd = self._source_file.fileno()
            target_fd = target_file.fileno()
            regular = all(stat.S_ISREG(os.fstat(fd).st_mode) for fd in (source_fd, target_fd))
        except OSError:
            return None
        return (source_fd, target_fd) if regular else None


def _aligned_buffer(size: int) -> memoryview:
    """*size* bytes of page-aligned memory, on huge pages where the kernel has them for the asking
    (fewer TLB misses while the kernel copies 4 MiB into or out of it)."""
    memory = mmap.mmap(-1, size)
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        with contextlib.suppress(OSError):  # a kernel without transparent huge pages says EINVAL
            memory.madvise(advice)
    return memoryview(memory)
