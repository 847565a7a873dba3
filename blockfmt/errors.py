"""The one exception tree of blockfmt.

Every error that crosses the public API is a :class:`BlockFormatError`::

    BlockFormatError
    ├── UnsupportedFormatError     unknown format name, or no plugin claims the file
    ├── UnsupportedFeatureError    a valid image using something not implemented
    ├── UnsupportedOperationError  the format has no such operation (``check`` on raw, ...)
    ├── CorruptImageError          the image's bytes break the format's rules
    │   └── LogReplayRequiredError read-only open of a VHDX whose log needs replay
    ├── BackingChainError          a differencing image's parent is missing, mismatched or loops
    ├── ReadOnlyError              write to an image opened read-only
    ├── InvalidOptionError         bad create/open option or size
    ├── OutOfRangeError            request beyond the end of the virtual disk
    ├── ImageLockedError           another process holds a conflicting lock
    ├── BlockIOError               OSError from the underlying file (keeps ``errno``)
    └── PluginError                broken or duplicate format plugin

The message is written once, where the fact is known, in QEMU's exact words where QEMU has
them. Context such as ``Could not open '<file>': `` and the hint are added by the CLI layer only
(:mod:`blockfmt.cli.report`), the way QEMU layers ``error_setg`` and ``error_prepend``.
"""

from __future__ import annotations

__all__ = [
    "BackingChainError",
    "BlockFormatError",
    "BlockIOError",
    "CorruptImageError",
    "ImageLockedError",
    "InvalidOptionError",
    "LogReplayRequiredError",
    "OutOfRangeError",
    "PluginError",
    "ReadOnlyError",
    "UnsupportedFeatureError",
    "UnsupportedFormatError",
    "UnsupportedOperationError",
]


class BlockFormatError(Exception):
    """Root of every error blockfmt raises.

    :ivar hint: optional extra lines a CLI prints after the message (QEMU's ``error_append_hint``).
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UnsupportedFormatError(BlockFormatError):
    """The format name is unknown, or the format cannot do what was asked."""


class UnsupportedFeatureError(BlockFormatError):
    """The image is valid but uses a feature blockfmt does not implement (yet)."""


class UnsupportedOperationError(BlockFormatError):
    """The format does not offer this operation (QEMU: ``-ENOTSUP``)."""


class CorruptImageError(BlockFormatError):
    """The image's on-disk structures are invalid."""


class LogReplayRequiredError(CorruptImageError):
    """A read-only open found a VHDX log that must be replayed first."""


class BackingChainError(BlockFormatError):
    """A differencing image's parent is missing, is not the image it was made on, or loops."""


class ReadOnlyError(BlockFormatError):
    """A write was attempted on an image opened read-only."""


class InvalidOptionError(BlockFormatError):
    """A create or open option, or a size, is not acceptable."""


class OutOfRangeError(BlockFormatError):
    """A request reaches beyond the virtual disk."""


class ImageLockedError(BlockFormatError):
    """Another process holds a lock that conflicts with this open."""


class BlockIOError(BlockFormatError):
    """The underlying file failed; wraps the :class:`OSError`.

    :ivar errno: the OS error number, or ``None``.
    """

    def __init__(self, message: str, *, errno: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.errno = errno

    @classmethod
    def from_os_error(cls, err: OSError, what: str) -> BlockIOError:
        """Wrap *err*, naming the operation *what* that failed."""
        return cls(f"{what}: {err.strerror or err}", errno=err.errno)


class PluginError(BlockFormatError):
    """A format plugin is broken or conflicts with another one."""
