"""One NBD export of an open image: each NBD request becomes one call on :class:`blockfmt.Image`.

Kept free of ``import nbdkit`` so the request semantics (cache and discard modes, FUA, block
status, errno choice) live apart from the callback glue in :mod:`.nbdkit_plugin`.

Every connection of one nbdkit process shares one :class:`Export` and so one open image: the
image's QEMU-compatible locks are taken once, when the server starts, and a second writer (another
blockfmt-nbd, qemu-io, a VM) is refused for the export's whole life. Format drivers promise no
thread safety, so one mutex serialises the calls into the image; see :mod:`.nbdkit_plugin` for the
thread model chosen around it.
"""

from __future__ import annotations

import enum
import errno
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..cache import CacheMode
from ..errors import (
    BlockIOError,
    InvalidOptionError,
    OutOfRangeError,
    ReadOnlyError,
    UnsupportedFeatureError,
    UnsupportedOperationError,
)
from ..image import Image

__all__ = [
    "STATE_HOLE",
    "STATE_ZERO",
    "CacheMode",
    "DiscardMode",
    "Export",
    "ExportSettings",
    "errno_for",
    "open_export",
]

#: NBD ``base:allocation`` bits (``NBD_STATE_HOLE``, ``NBD_STATE_ZERO``; nbdkit's ``EXTENT_*``)
STATE_HOLE = 1
STATE_ZERO = 2


class DiscardMode(enum.Enum):
    """qemu-nbd's ``--discard``: ``ignore`` (QEMU's default) drops trims, ``unmap`` frees space."""

    IGNORE = "ignore"
    UNMAP = "unmap"

    @classmethod
    def parse(cls, text: str) -> DiscardMode:
        """QEMU's spellings: ``ignore``/``off`` and ``unmap``/``on``.

        :raises InvalidOptionError: for anything else, with qemu-nbd's message.
        """
        spelled = {"ignore": cls.IGNORE, "off": cls.IGNORE, "unmap": cls.UNMAP, "on": cls.UNMAP}
        try:
            return spelled[text]
        except KeyError:
            raise InvalidOptionError(f"Invalid discard mode `{text}'") from None


@dataclass(frozen=True)
class ExportSettings:
    """What ``blockfmt-nbd`` hands the plugin: which image, how to open it, how to serve it."""

    filename: str
    format: str | None = None
    read_only: bool = False
    cache: CacheMode = CacheMode.WRITEBACK
    discard: DiscardMode = DiscardMode.IGNORE
    open_options: dict[str, Any] = field(default_factory=dict)


def errno_for(err: BaseException) -> int:
    """The errno an NBD client should see for *err* (nbdkit turns it into an NBD error code).

    NBD knows only EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP and ESHUTDOWN; anything
    else reaches the client as EIO, so a file's own errno is passed on and nbdkit narrows it.
    """
    if isinstance(err, BlockIOError) and err.errno is not None:
        return err.errno
    if isinstance(err, OSError) and err.errno is not None:
        return err.errno
    if isinstance(err, ReadOnlyError):
        return errno.EPERM
    if isinstance(err, OutOfRangeError | InvalidOptionError):
        return errno.EINVAL
    if isinstance(err, UnsupportedOperationError | UnsupportedFeatureError):
        return errno.EOPNOTSUPP
    if isinstance(err, MemoryError):
        return errno.ENOMEM
    return errno.EIO


class Export:
    """The requests of every connection of one server, applied to one open image.

    :param image: the open image; the export closes it in :meth:`close`.
    """

    def __init__(self, image: Image, settings: ExportSettings) -> None:
        self.image = image
        self.settings = settings
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self.image.size

    @property
    def writable(self) -> bool:
        return not self.image.read_only

    def pread(self, buf: memoryview, offset: int) -> None:
        with self._lock:
            self.image.readinto_at(offset, buf)

    def pwrite(self, buf: memoryview, offset: int, *, fua: bool) -> None:
        with self._lock:
            self.image.write_at(offset, buf)
            self._after_write(fua)

    def zero(self, length: int, offset: int, *, may_trim: bool, fua: bool) -> None:
        """NBD_CMD_WRITE_ZEROES: unmapping only when the client allows it and ``--discard=unmap``."""
        unmap = may_trim and self.settings.discard is DiscardMode.UNMAP
        with self._lock:
            self.image.write_zeroes(offset, length, unmap=unmap)
            self._after_write(fua)

    def trim(self, length: int, offset: int, *, fua: bool) -> None:
        """NBD_CMD_TRIM: a no-op under ``--discard=ignore``, as in qemu-nbd."""
        if self.settings.discard is DiscardMode.IGNORE:
            return
        with self._lock:
            self.image.discard(offset, length)
            self._after_write(fua)

    def flush(self) -> None:
        if self.settings.cache.ignores_flush:
            return
        with self._lock:
            self.image.flush()

    def extents(self, length: int, offset: int, *, req_one: bool) -> Iterator[tuple[int, int, int]]:
        """``base:allocation`` from the image's real allocation, as ``(offset, length, flags)``."""
        with self._lock:
            extents = self.image.map(offset, length)
        for extent in extents[:1] if req_one else extents:
            flags = (0 if extent.data else STATE_HOLE) | (STATE_ZERO if extent.zero else 0)
            yield extent.offset, extent.length, flags

    def close(self) -> None:
        """Flush and close the image (releasing its locks)."""
        with self._lock:
            self.image.close()

    def _after_write(self, fua: bool) -> None:
        """FUA, or a cache mode without a volatile write cache, makes the write durable now."""
        if (fua or self.settings.cache.flush_every_write) and not self.settings.cache.ignores_flush:
            self.image.flush()


def open_export(settings: ExportSettings) -> Export:
    """Open the image *settings* name and wrap it.

    :raises BlockFormatError: when the image cannot be opened (lock conflicts included).
    """
    from ..api import open as open_image

    image = open_image(
        settings.filename, settings.format, read_only=settings.read_only, options=settings.open_options
    )
    return Export(image, settings)
