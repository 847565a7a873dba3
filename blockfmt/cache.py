"""Cache modes: when writes to an image become durable (QEMU's ``-t``/``-T``/``--cache``).

QEMU's five modes are three flush policies, plus O_DIRECT for two of them:

============  ===================================  ==========================================
mode          flushes (``fdatasync``)              QEMU also
============  ===================================  ==========================================
writeback     when asked, and once at close        -
none          when asked, and once at close        opens with O_DIRECT
writethrough  after every write, before it returns -
directsync    after every write, before it returns opens with O_DIRECT
unsafe        never: flush requests do nothing     -
============  ===================================  ==========================================

blockfmt always goes through the host page cache: ``none`` and ``directsync`` behave as
``writeback`` and ``writethrough`` (O_DIRECT needs sector-aligned buffers, offsets and lengths
for every request, which neither the formats' metadata writes nor unaligned guest requests
guarantee; docs/differences.md). A format's own ordering flushes (the VHDX log's) are flushes
like any other: every mode but ``unsafe`` keeps them, so metadata stays crash-safe; ``unsafe``
drops them too, as QEMU's ``BDRV_O_NO_FLUSH`` does, and promises nothing after a crash.
"""

from __future__ import annotations

import enum

from .errors import InvalidOptionError

__all__ = ["CacheMode"]


class CacheMode(enum.Enum):
    """One of QEMU's cache modes, for :func:`blockfmt.open` and :func:`blockfmt.convert.convert`."""

    WRITEBACK = "writeback"
    NONE = "none"
    WRITETHROUGH = "writethrough"
    DIRECTSYNC = "directsync"
    UNSAFE = "unsafe"

    @classmethod
    def parse(cls, text: str) -> CacheMode:
        """A mode by QEMU's name; ``off`` is QEMU's other spelling of ``none``.

        :raises InvalidOptionError: ``Invalid cache option: <text>`` (qemu-img's and qemu-io's text).
        """
        try:
            return cls("none" if text == "off" else text)
        except ValueError:
            raise InvalidOptionError(f"Invalid cache option: {text}") from None

    @property
    def flush_every_write(self) -> bool:
        """No volatile write cache: each write is durable before it returns."""
        return self in (CacheMode.WRITETHROUGH, CacheMode.DIRECTSYNC)

    @property
    def ignores_flush(self) -> bool:
        """``unsafe``: flushes (requested, ordering or closing ones) never reach the disk."""
        return self is CacheMode.UNSAFE
