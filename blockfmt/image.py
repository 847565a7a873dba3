"""The open image: positional I/O, maintenance operations, and a file-like view.

:class:`Image` is an :class:`io.RawIOBase`, so it drops into ``shutil.copyfileobj``,
``io.BufferedReader`` and friends; it also offers positional calls (``read_at``/``write_at``)
that leave the stream position alone.
"""

from __future__ import annotations

import _thread
import io
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .cache import CacheMode
from .driver import CheckResult, Extent, FormatDriver, FormatSpec, ImageInfo, RepairMode
from .errors import InvalidOptionError, OutOfRangeError, ReadOnlyError
from .fileio import ImageFile

if TYPE_CHECKING:
    from .host import FormatHooks

__all__ = ["Image"]

Buffer = bytes | bytearray | memoryview


class Image(io.RawIOBase):
    """An open disk image of some format.

    Created by :func:`blockfmt.open`; closing it closes the driver and then the file it owns.

    Safe to share between threads: every call into the driver holds one lock per image, so
    requests run one at a time (drivers keep allocation state and caches that two concurrent
    requests would corrupt). Use one image per thread for parallel reads.

    :param hooks: the hooks of the format's plugin, which opened *driver* (``check`` runs there).
    :param cache: when writes are flushed (:mod:`blockfmt.cache`): after every write, zeroing,
        discard and resize for ``writethrough``/``directsync``. ``unsafe`` is the file's business
        (the opener made its flushes do nothing), so the format still hands its pending metadata
        to the OS at flush and close.
    """

    def __init__(
        self,
        hooks: FormatHooks,
        format: str,
        file: ImageFile,
        driver: FormatDriver,
        *,
        read_only: bool,
        cache: CacheMode = CacheMode.WRITEBACK,
    ) -> None:
        super().__init__()
        self.cache = cache
        self._flush_every_write = cache.flush_every_write and not read_only
        self._hooks = hooks
        self._file = file
        self._driver = driver
        self._read_only = read_only
        self._pos = 0
        self._released = False
        #: serialises driver calls (and the stream position) between threads; ``threading.RLock``
        #: is this C lock, and importing :mod:`threading` for it was ~1 ms of every start
        self._lock = _thread.RLock()
        self.format = format
        self.filename = file.name
        #: the parent of a differencing image, opened with it (see :mod:`blockfmt.chain`)
        self.backing: Image | None = None
        #: the parent's name as this image stores it (``qemu-img info``'s "backing file")
        self.backing_name: str | None = None

    # -- positional interface -------------------------------------------------

    @property
    def size(self) -> int:
        """Virtual disk size in bytes."""
        return self._driver.size

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def spec(self) -> FormatSpec:
        """What the format declared about itself (name, options, whether it keeps metadata)."""
        return self._hooks.spec

    @property
    def driver(self) -> FormatDriver:
        """The format driver (for plugin authors and tests)."""
        return self._driver

    def _check_range(self, offset: int, length: int) -> None:
        self._checkClosed()
        if offset < 0 or length < 0 or offset + length > self._driver.size:
            raise OutOfRangeError(
                f"request at offset {offset} length {length} is outside the image (size {self._driver.size})"
            )

    def _check_writable(self) -> None:
        if self._read_only:
            raise ReadOnlyError(f"image '{self.filename}' is opened read-only")

    def readinto_at(self, offset: int, buf: Buffer) -> int:
        """Fill *buf* from virtual offset *offset*; the whole range must lie inside the disk.

        :returns: ``len(buf)``.
        :raises OutOfRangeError: when the range reaches past the end of the disk.
        """
        # the shortest path for a small read, which costs little more than the system call:
        # a view cast only when its items are not bytes, locals, the checks in one test
        view = memoryview(buf)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        length = len(view)
        driver, lock = self._driver, self._lock
        lock.acquire()
        try:
            if offset < 0 or offset + length > driver.size or self._released:
                self._check_range(offset, length)  # raises what is wrong
            if length:
                driver.readinto(offset, view)
        finally:
            lock.release()
        return length

    def read_at(self, offset: int, length: int) -> bytes:
        """Return *length* bytes from virtual offset *offset*."""
        buf = bytearray(length)
        self.readinto_at(offset, buf)
        return bytes(buf)

    def write_at(self, offset: int, data: Buffer) -> int:
        """Write *data* at virtual offset *offset*; returns ``len(data)``.

        :raises ReadOnlyError: when opened read-only.
        :raises OutOfRangeError: when the range reaches past the end of the disk.
        """
        view = memoryview(data)  # as readinto_at
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        length = len(view)
        driver, lock = self._driver, self._lock
        lock.acquire()
        try:
            if offset < 0 or offset + length > driver.size or self._released or self._read_only:
                self._check_range(offset, length)  # raises what is wrong
                self._check_writable()
            if length:
                driver.write(offset, view)
                if self._flush_every_write:
                    driver.flush()
        finally:
            lock.release()
        return length

    def write_zeroes(self, offset: int, length: int, *, unmap: bool = False) -> None:
        """Make a range read as zeros; with *unmap* the format may free the space."""
        with self._lock:
            self._check_range(offset, length)
            self._check_writable()
            if length:
                self._driver.write_zeroes(offset, length, unmap=unmap)
                if self._flush_every_write:
                    self._driver.flush()

    def discard(self, offset: int, length: int) -> None:
        """Tell the format a range is unused; afterwards it reads as zeros or as before."""
        with self._lock:
            self._check_range(offset, length)
            self._check_writable()
            if length:
                self._driver.discard(offset, length)
                if self._flush_every_write:
                    self._driver.flush()

    def map(self, offset: int = 0, length: int | None = None) -> list[Extent]:
        """Return the allocation status of a range through the backing chain, adjacent equal
        extents merged; :attr:`Extent.depth` says which layer holds each one (0: this image)."""
        from .chain import chain_extents

        if length is None:
            length = self.size - offset
        with self._lock:
            self._check_range(offset, length)
            return merge_extents(chain_extents(self, offset, length))

    # -- backing chain ---------------------------------------------------------

    def backing_chain(self) -> list[Image]:
        """This image and its parents, top first."""
        chain: list[Image] = [self]
        while chain[-1].backing is not None:
            chain.append(chain[-1].backing)  # type: ignore[arg-type]
        return chain

    def set_backing(self, parent: Image, name: str) -> None:
        """Make *parent* (owned from now on, closed with this image) the layer below this one."""
        from .chain import BackingView

        self.close_backing()
        self.backing, self.backing_name = parent, name
        self._driver.backing = BackingView(parent)

    def close_backing(self) -> None:
        """Close the parents; the ranges they supplied read as zeros afterwards."""
        parent, self.backing = self.backing, None
        self._driver.backing = None
        if parent is not None:
            parent.close()

    def info(self) -> ImageInfo:
        """Format-level facts (cluster size, dirty flag, format-specific details)."""
        with self._lock:
            self._checkClosed()
            return self._driver.info()

    def check(self, repair: RepairMode | str = RepairMode.NONE) -> CheckResult:
        """Check the image; with ``repair`` ``"leaks"`` or ``"all"`` fix what can be fixed safely.

        :raises UnsupportedOperationError: when the format has no check (raw).
        :raises ReadOnlyError: when asked to repair an image opened read-only.
        """
        self._checkClosed()
        mode = RepairMode(repair)
        if mode is not RepairMode.NONE:
            self._check_writable()
        with self._lock:
            return self._hooks.check(self._driver, mode)

    def resize(self, size: int, *, shrink: bool = False) -> None:
        """Change the virtual disk size; growth reads as zeros, a shrink drops the data past *size*.

        :param shrink: must be set to make the disk smaller (qemu-img ``resize --shrink``).
        :raises InvalidOptionError: for a negative size, or a smaller one without *shrink*.
        :raises UnsupportedOperationError: when the format cannot be resized.
        :raises ReadOnlyError: when opened read-only.
        """
        self._checkClosed()
        self._check_writable()
        if size < 0:
            raise InvalidOptionError("New image size must be positive")
        if size < self.size and not shrink:
            raise InvalidOptionError("Use the --shrink option to perform a shrink operation.")
        self._driver.truncate(size)
        if self._flush_every_write:
            self._driver.flush()

    def actual_size(self) -> int:
        """Bytes the image file occupies on disk (qemu-img's "disk size")."""
        try:
            return os.fstat(self._file.fileno()).st_blocks * 512
        except OSError:
            return self._file.size()

    # -- io.RawIOBase ----------------------------------------------------------

    def readable(self) -> bool:
        self._checkClosed()
        return True

    def writable(self) -> bool:
        self._checkClosed()
        return not self._read_only

    def seekable(self) -> bool:
        self._checkClosed()
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence ({whence})")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        with self._lock:
            length = max(0, min(len(view), self.size - self._pos))
            self.readinto_at(self._pos, view[:length])
            self._pos += length
        return length

    def write(self, data: Buffer) -> int:  # type: ignore[override]
        with self._lock:
            count = self.write_at(self._pos, data)
            self._pos += count
        return count

    def flush(self) -> None:
        """Make completed writes durable (a no-op for read-only images)."""
        with self._lock:
            if self.closed or self._released:
                return
            if not self._read_only:
                self._driver.flush()

    def start_writeback(self) -> None:
        """Let the OS start writing this image's dirty pages to storage now, without waiting.

        For long streams of writes (convert does this after every chunk): the device then works
        while the writer goes on, and the closing flush finds little left to do. It is a hint,
        not a flush: nothing becomes durable and no write ordering changes.
        """
        if not self.closed and not self._read_only:
            self._file.start_writeback()

    def close(self) -> None:
        """Flush, close the driver, then the file. Safe to call twice."""
        with self._lock:
            if self.closed:
                return
            try:
                try:
                    self.flush()
                finally:
                    self._driver.close()
            finally:
                self._released = True
                self._file.close()
                super().close()
                self.close_backing()

    def __repr__(self) -> str:
        return f"<blockfmt.Image {self.filename!r} format={self.format} size={self.size}>"


def merge_extents(extents: Iterator[Extent] | list[Extent]) -> list[Extent]:
    """Merge neighbours with the same status whose host offsets (if any) continue each other."""
    merged: list[Extent] = []
    for ext in extents:
        if ext.length == 0:
            continue
        if merged:
            last = merged[-1]
            contiguous_host = (last.host_offset is None and ext.host_offset is None) or (
                last.host_offset is not None
                and ext.host_offset is not None
                and last.host_offset + last.length == ext.host_offset
            )
            if (
                last.offset + last.length == ext.offset
                and last.data == ext.data
                and last.zero == ext.zero
                and last.present == ext.present
                and last.depth == ext.depth
                and contiguous_host
            ):
                merged[-1] = Extent(
                    last.offset,
                    last.length + ext.length,
                    last.data,
                    last.zero,
                    last.host_offset,
                    last.present,
                    last.depth,
                )
                continue
        merged.append(ext)
    return merged
