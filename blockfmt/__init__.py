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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: public name -> the submodule that defines it. Importing ``blockfmt`` imports none of them: a
#: command-line tool that runs hundreds of times (qemu-iotests) pays only for the modules it uses,
#: and ``import blockfmt.errors`` does not drag in the plugin host and the backing-chain code.
_SUBMODULE_OF = {
    **dict.fromkeys(("create", "open", "probe"), "api"),
    "CacheMode": "cache",
    **dict.fromkeys(
        (
            "CheckResult",
            "CreateOption",
            "Extent",
            "FormatDriver",
            "FormatSpec",
            "ImageInfo",
            "OpenOption",
            "RepairMode",
        ),
        "driver",
    ),
    **dict.fromkeys(
        (
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
        ),
        "errors",
    ),
    "ImageFile": "fileio",
    **dict.fromkeys(("Host", "default_host", "get_plugin_manager"), "host"),
    "Image": "image",
    **dict.fromkeys(("hookimpl", "hookspec"), "markers"),
}


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first use (PEP 562) and keep the name here."""
    submodule = _SUBMODULE_OF.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{submodule}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
