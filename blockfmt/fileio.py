"""The file layer under every format plugin.

Plugins never touch ``os`` file descriptors directly; they get an :class:`ImageFile`. That keeps
positional I/O, short-read handling and :class:`OSError` wrapping in one place, and lets tests slide
a fault-injecting file (cut after the N-th write or flush) under a plugin to prove crash safety.

Ownership: the host opens and closes the :class:`ImageFile`; a driver must not close it.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .errors import BlockIOError, OutOfRangeError
from .locking import ImageLock, LockRequest

if TYPE_CHECKING:
    import ctypes

__all__ = ["ImageFile", "OsImageFile", "clone_file_range"]

#: the most one ``pwrite`` call is given. The page cache sizes its folios by the write, and a
#: 4 MiB write takes 4 MiB folios, which come from the free blocks a VM with free page reporting
#: (virtio-balloon, e.g. Firecracker) has handed back to its host: every first touch of them
#: faults in the host, and the copy into the page cache ran 4-7 times slower than qemu-img's
#: 1 MiB writes. 2 MiB pieces fixed most of it when idle; beside two CPU-bound processes 1 MiB
#: pieces did better still (1 GiB raw->raw on ext4, medians of 12: 1.37 s and 0.99 s of CPU
#: against 1.66 s and 1.17 s), and cost nothing measurable idle or on tmpfs.
WRITE_PIECE = 1024 * 1024


class ImageFile:
    """Positional I/O on one image file. Subclass to intercept I/O (fault injection, tracing).

    All offsets and lengths are bytes. Reads beyond end of file return zeros up to the request,
    as a file system hole would, except where a method says otherwise.
    """

    name: str
    read_only: bool

    def preadinto(self, buf: memoryview | bytearray, offset: int) -> int:
        """Fill *buf* from *offset*; return the number of bytes that came from the file.

        Bytes past end of file are left as they are; callers that need zeros there pass a zeroed buffer
        or use :meth:`pread`.
        """
        raise NotImplementedError

    def pread(self, length: int, offset: int) -> bytes:
        """Return *length* bytes at *offset*; the part past end of file reads as zeros."""
        buf = bytearray(length)
        self.preadinto(buf, offset)
        return bytes(buf)

    def pread_exact(self, length: int, offset: int, what: str) -> bytes:
        """Return *length* bytes at *offset* or raise :class:`OutOfRangeError` naming *what*."""
        buf = bytearray(length)
        got = self.preadinto(buf, offset)
        if got != length:
            raise OutOfRangeError(f"{what} at offset {offset} ends beyond the end of the file")
        return bytes(buf)

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write all of *data* at *offset*."""
        raise NotImplementedError

    def size(self) -> int:
        """Current length of the file in bytes."""
        raise NotImplementedError

    def truncate(self, length: int) -> None:
        """Set the file length (growing leaves a hole)."""
        raise NotImplementedError

    def flush(self) -> None:
        """Make every completed write durable (``fdatasync``). Ordering points of the VHDX log."""
        raise NotImplementedError

    def changed_externally(self) -> None:
        """Note that the file's contents changed other than through these methods (a range cloned
        into its descriptor): the next :meth:`flush` must reach the disk. The default flushes
        every time anyway."""

    def data_runs(self, start: int, end: int) -> Iterator[tuple[int, int, bool]]:
        """Split ``[start, end)`` into ``(offset, length, is_data)`` runs of file data and holes.

        Holes read as zeros, so callers may skip reading them (``map``, convert). A file that
        cannot tell is all data, which is what the default says.
        """
        if end > start:
            yield start, end - start, True

    def start_writeback(self) -> None:
        """Start writing the file's dirty pages to storage, without waiting for them.

        A hint for long streams of writes (convert): the device then works while the writer
        goes on, instead of the closing :meth:`flush` finding gigabytes of dirty pages and
        doing all of it at the end. It makes nothing durable and adds no ordering: the kernel
        may write any dirty page back at any time anyway. The default does nothing.
        """

    def punch_hole(self, offset: int, length: int) -> None:
        """Deallocate a range so it reads as zeros; falls back to writing zeros."""
        zeros = bytes(min(length, 1 << 20))
        end = offset + length
        while offset < end:
            n = min(len(zeros), end - offset)
            self.pwrite(zeros[:n], offset)
            offset += n

    def fileno(self) -> int:
        """OS file descriptor, for zero-copy paths (:func:`clone_file_range`) and ``fstat``."""
        raise OSError(errno.EBADF, "no file descriptor")

    def close(self) -> None:
        """Release the file. Only the host calls this."""


class OsImageFile(ImageFile):
    """An :class:`ImageFile` over an OS file descriptor.

    :meth:`lock` takes QEMU-compatible image locks (:mod:`blockfmt.locking`); closing releases them.

    :param sync: False makes :meth:`flush` do nothing (cache mode ``unsafe``, QEMU's
        ``BDRV_O_NO_FLUSH``): nothing written through this file is ever made durable on purpose.

    A flush with nothing written since the last one does nothing, as QEMU skips a flush when the
    node's write generation has not moved (a writethrough session's closing flush).
    """

    def __init__(
        self,
        path: str,
        *,
        read_only: bool,
        create: bool = False,
        force_share: bool = False,
        sync: bool = True,
    ) -> None:
        self.name = path
        self.read_only = read_only
        self.force_share = force_share
        self.sync = sync
        #: written (or resized, or holes punched) since the last flush
        self._unflushed = False
        flags = os.O_RDONLY if read_only else os.O_RDWR
        if create:
            flags |= os.O_CREAT | os.O_TRUNC
        flags |= getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd: int | None = os.open(path, flags, 0o644)
        except OSError as err:
            raise BlockIOError.from_os_error(err, f"Could not open '{path}'") from err
        self._lock = ImageLock(self._fd, path)

    def lock(self, request: LockRequest) -> None:
        """Hold *request*'s lock bytes until close, as QEMU does for an open image.

        :raises ImageLockedError: when another process's locks conflict.
        """
        self._lock.acquire(request)

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise BlockIOError("I/O on a closed image file", errno=errno.EBADF)
        return self._fd

    def fileno(self) -> int:
        return self.fd

    def preadinto(self, buf: memoryview | bytearray, offset: int) -> int:
        fd = self._fd if self._fd is not None else self.fd  # (the property raises when closed)
        try:  # one call fills the buffer unless the file ends inside it: no view on that path
            done = os.preadv(fd, (buf,), offset)
        except OSError as err:
            raise BlockIOError.from_os_error(err, "Could not read image") from err
        if done == 0 or done == (buf.nbytes if type(buf) is memoryview else len(buf)):
            return done
        view = memoryview(buf).cast("B")
        try:
            while done < len(view):
                n = os.preadv(self.fd, [view[done:]], offset + done)
                if n == 0:
                    break
                done += n
        except OSError as err:
            raise BlockIOError.from_os_error(err, "Could not read image") from err
        return done

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        fd = self._fd if self._fd is not None else self.fd  # (the property raises when closed)
        self._unflushed = True
        size = data.nbytes if type(data) is memoryview else len(data)
        try:
            done = 0
            if size <= WRITE_PIECE:  # one call writes it all unless the kernel stops short
                done = os.pwrite(fd, data, offset)
                if done == size:
                    return
            view = memoryview(data).cast("B")
            while done < size:
                done += os.pwrite(fd, view[done : done + WRITE_PIECE], offset + done)
        except OSError as err:
            raise BlockIOError.from_os_error(err, "Could not write image") from err

    def size(self) -> int:
        try:
            return os.fstat(self.fd).st_size
        except OSError as err:
            raise BlockIOError.from_os_error(err, "Could not stat image") from err

    def truncate(self, length: int) -> None:
        self._unflushed = True
        try:
            os.ftruncate(self.fd, length)
        except OSError as err:
            raise BlockIOError.from_os_error(err, "Could not resize image file") from err

    def flush(self) -> None:
        if not self.sync or not self._unflushed:
            return
        try:
            os.fdatasync(self.fd)
        except OSError as err:
            raise BlockIOError.from_os_error(err, "Could not flush image") from err
        self._unflushed = False

    def changed_externally(self) -> None:
        self._unflushed = True

    def data_runs(self, start: int, end: int) -> Iterator[tuple[int, int, bool]]:
        pos = start
        while pos < end:
            data_at = self._seek(pos, os.SEEK_DATA, end)
            if data_at > pos:
                yield pos, data_at - pos, False
            if data_at >= end:
                return
            hole_at = self._seek(data_at, os.SEEK_HOLE, end)
            yield data_at, hole_at - data_at, True
            pos = hole_at

    def _seek(self, pos: int, whence: int, end: int) -> int:
        """``lseek`` for ``SEEK_DATA``/``SEEK_HOLE``, capped at *end*.

        No data past *pos* (ENXIO) gives *end* for ``SEEK_DATA``. Any other failure says the
        file cannot tell: *pos* for ``SEEK_DATA`` and *end* for ``SEEK_HOLE``, so all is data.
        """
        try:
            return min(os.lseek(self.fd, pos, whence), end)
        except OSError as err:
            if whence == os.SEEK_DATA and err.errno != errno.ENXIO:
                return pos
            return end

    def start_writeback(self) -> None:
        if not self.read_only:
            _sync_file_range_write(self.fd)

    def punch_hole(self, offset: int, length: int) -> None:
        self._unflushed = True
        try:
            _fallocate_punch(self.fd, offset, length)
        except OSError:
            super().punch_hole(offset, length)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_SYNC_FILE_RANGE_WRITE = 0x02
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library's functions, from the symbols already loaded into this process.

    Not ``ctypes.util.find_library("c")``: that runs ``ldconfig`` (a fork and exec, ~10 ms and
    more under load) in every process on its first punch or writeback. ctypes itself is imported
    here, not at start-up: most processes never punch a hole.
    """
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _fallocate_punch(fd: int, offset: int, length: int) -> None:
    """Punch a hole with fallocate(2) (Python has no binding); raises OSError where unsupported."""
    import ctypes

    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    res = _libc().fallocate(
        ctypes.c_int(fd), ctypes.c_int(mode), ctypes.c_int64(offset), ctypes.c_int64(length)
    )
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _sync_file_range_write(fd: int) -> None:
    """Start writeback of every dirty page of *fd* (sync_file_range(2), no Python binding).

    Failures are ignored: this is a hint, and a file system without it simply writes back later.
    """
    import ctypes

    whole_file = ctypes.c_int64(0)
    _libc().sync_file_range(
        ctypes.c_int(fd), ctypes.c_int64(0), whole_file, ctypes.c_uint(_SYNC_FILE_RANGE_WRITE)
    )


#: ``_IOW(0x94, 13, struct file_clone_range)`` from linux/fs.h
_FICLONERANGE = 0x4020940D
#: what a file system (or a range) that cannot share blocks answers
_CLONE_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS})


def clone_file_range(
    source_fd: int, source_offset: int, target_fd: int, target_offset: int, length: int
) -> bool:
    """Make a target range share the source range's blocks (a reflink); True when it did.

    Only reflink file systems (XFS, btrfs, ...) can, for ranges aligned to their block size and
    within one file system. Where they cannot this returns False and nothing was changed; other
    failures (EIO, ENOSPC) raise :class:`OSError`.
    """
    request = struct.pack("=qQQQ", source_fd, source_offset, length, target_offset)
    try:
        fcntl.ioctl(target_fd, _FICLONERANGE, request)
    except OSError as err:
        if err.errno in _CLONE_UNSUPPORTED:
            return False
        raise
    return True
