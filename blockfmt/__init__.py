"""blockfmt: read, write, create, check and repair VHDX and VDI disk images.

The public API::

    import blockfmt
    blockfmt.create("disk.vhdx", "vhdx", 64 << 30, block_size=32 << 20)
    with blockfmt.open("disk.vhdx", read_only=False) as img:
        img.write_at(0, b"hello")
        print(img.check())

Formats are pluggy plugins found through the ``blockfmt.formats`` entry-point group; write your own
with :data:`hookimpl` and the hooks in :mod:`blockfmt.hookspecs`.
"""

from __future__ import annotations

from .api import create, open, probe
from .cache import CacheMode
from .driver import (
    CheckResult,
    CreateOption,
    Extent,
    FormatDriver,
    FormatSpec,
    ImageInfo,
    OpenOption,
    RepairMode,
)
from .errors import (
    BackingChainError,
    BlockFormatError,
    BlockIOError,
    CorruptImageError,
    ImageLockedError,
    InvalidOptionError,
    LogReplayRequiredError,
    OutOfRangeError,
    PluginError,
    ReadOnlyError,
    UnsupportedFeatureError,
    UnsupportedFormatError,
    UnsupportedOperationError,
)
from .fileio import ImageFile
from .host import Host, default_host, get_plugin_manager
from .image import Image
from .markers import hookimpl, hookspec

__all__ = [
    "BackingChainError",
    "BlockFormatError",
    "BlockIOError",
    "CacheMode",
    "CheckResult",
    "CorruptImageError",
    "CreateOption",
    "Extent",
    "FormatDriver",
    "FormatSpec",
    "Host",
    "Image",
    "ImageFile",
    "ImageInfo",
    "ImageLockedError",
    "InvalidOptionError",
    "LogReplayRequiredError",
    "OpenOption",
    "OutOfRangeError",
    "PluginError",
    "ReadOnlyError",
    "RepairMode",
    "UnsupportedFeatureError",
    "UnsupportedFormatError",
    "UnsupportedOperationError",
    "create",
    "default_host",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
    "open",
    "probe",
]
