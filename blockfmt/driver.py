"""What a format plugin hands back from ``blockfmt_open``, and the value types it returns.

Per-request I/O does not go through pluggy: the ``blockfmt_open`` hook returns a
:class:`FormatDriver`, and :class:`blockfmt.Image` calls its bound methods directly. Hook
dispatch is paid once per open, not once per read or write, so a 4 KiB random-write workload
costs the same as it would with a hand-written function table (QEMU's ``BlockDriver``).

The host guarantees every request it passes to a driver lies within ``[0, size)`` and that write
requests only reach drivers opened read-write, so drivers need not re-check either.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import UnsupportedOperationError
from .fileio import ImageFile

__all__ = [
    "BackingLink",
    "BackingReader",
    "CheckResult",
    "CreateOption",
    "Extent",
    "FormatDriver",
    "FormatSpec",
    "ImageInfo",
    "RepairMode",
]


class RepairMode(enum.Enum):
    """What ``check`` may fix: nothing, leaked space only, or everything (qemu-img ``-r``)."""

    NONE = "none"
    LEAKS = "leaks"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class CreateOption:
    """One ``-o key=value`` option of a format, as ``qemu-img create -o help`` lists it.

    :ivar type: ``"size"``, ``"bool"``, ``"number"`` or ``"string"`` (QEMU's QemuOptType names).
    :ivar default: the value used when the option is absent; ``None`` when QEMU shows none.
    :ivar blockdev_name: the spelling in QMP ``blockdev-create`` (``log-size`` for ``log_size``).
    """

    name: str
    type: str
    help: str
    default: Any = None
    blockdev_name: str | None = None


@dataclass(frozen=True, slots=True)
class OpenOption:
    """One format-specific open option (``blockfmt.open(options=...)``, ``blockfmt-nbd -o``).

    The host checks every open against the options the format declares, so a driver receives
    only known keys with accepted values and needs no checks of its own.

    :ivar choices: the values it accepts.
    """

    name: str
    help: str
    choices: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """A format a plugin provides.

    :ivar name: the format name (``-f`` value); unique across installed plugins.
    :ivar create_options: in the order ``qemu-img create`` prints them in its ``Formatting`` line,
        starting with ``size`` (whose help text ``-o help`` shows per format). An option is printed
        there when given or when its ``default`` is not None, so options QEMU shows no default for
        keep ``default=None`` and the plugin applies its own fallback.
    :ivar open_options: what :func:`blockfmt.open` accepts in *options* for this format.
    :ivar data_only: the format keeps no metadata of its own, the file is the disk (QEMU's raw):
        opens then take QEMU's lighter lock set (no resize, nothing refused to other writers).
    :ivar plugin_name: filled in by the host: the plugin that registered it.
    """

    name: str
    description: str
    create_options: tuple[CreateOption, ...] = ()
    data_only: bool = False
    open_options: tuple[OpenOption, ...] = ()
    plugin_name: str = ""


@dataclass(frozen=True, slots=True)
class Extent:
    """One run of the virtual disk with a single allocation status (``qemu-img map``).

    :ivar data: bytes come from the image file (``data`` in qemu-img's JSON).
    :ivar zero: the range reads as zeros.
    :ivar host_offset: where the data lives in the image file, when it is there contiguously.
    :ivar present: the range is allocated in this image; a driver with a backing file yields
        ``data=False, zero=False, present=False`` for ranges its parent supplies.
    :ivar depth: how many backing links down the chain the range is allocated (QEMU's ``depth``).
    """

    offset: int
    length: int
    data: bool
    zero: bool
    host_offset: int | None = None
    present: bool = True
    depth: int = 0


@dataclass(frozen=True, slots=True)
class BackingLink:
    """What a differencing image says about its parent (``backing_link`` of a driver).

    :ivar display_name: the backing file name as ``qemu-img info`` shows it.
    :ivar candidates: paths to try, in order, already mapped to this host (the first existing
        file is opened); empty when the format stores no path (VDI) and the parent is searched.
    :ivar format: the parent's format name.
    :ivar search_dirs: directories to search for the parent by identity when no candidate exists.
    """

    display_name: str
    candidates: tuple[str, ...]
    format: str
    search_dirs: tuple[str, ...] = ()


class BackingReader(Protocol):
    """The parent as a differencing driver sees it: reads and allocation of the merged chain below."""

    size: int

    def readinto(self, offset: int, buf: memoryview) -> None: ...


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """Format-level facts for ``qemu-img info``.

    :ivar cluster_size: the allocation unit (VHDX block size, VDI block size); ``None`` for raw.
    :ivar format_specific: extra facts; the CLI shows them only where qemu-img does.
    """

    cluster_size: int | None = None
    dirty: bool = False
    format_specific: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CheckResult:
    """What a consistency check found and fixed; mirrors QEMU's ``BdrvCheckResult``.

    :ivar messages: one line per problem, as qemu-img prints them on stderr (``ERROR ...``).
    :ivar corruptions_fixed: counts repairs, including a VHDX log replayed on open.
    """

    corruptions: int = 0
    leaks: int = 0
    check_errors: int = 0
    corruptions_fixed: int = 0
    leaks_fixed: int = 0
    image_end_offset: int | None = None
    total_clusters: int | None = None
    allocated_clusters: int | None = None
    fragmented_clusters: int | None = None
    compressed_clusters: int | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when nothing is left to report."""
        return self.corruptions == 0 and self.leaks == 0 and self.check_errors == 0


class FormatDriver(abc.ABC):
    """One open image of one format. Returned by the ``blockfmt_open`` hook.

    Subclasses set :attr:`size` (virtual disk bytes) and implement :meth:`readinto`; writable
    formats also implement :meth:`write`. The :class:`ImageFile` stays owned by the host.
    """

    #: virtual disk size in bytes
    size: int
    #: the parent chain's reader, attached by :mod:`blockfmt.chain` to an image with a backing link;
    #: ranges the image does not hold read as zeros while it is None (QEMU's ``backing: null``)
    backing: BackingReader | None = None

    def __init__(self, file: ImageFile, *, read_only: bool) -> None:
        self.file = file
        self.read_only = read_only

    @abc.abstractmethod
    def readinto(self, offset: int, buf: memoryview) -> None:
        """Fill all of *buf* with the virtual disk's bytes at *offset*.

        :raises CorruptImageError: when metadata needed for the range is invalid.
        :raises BlockIOError: when the file cannot be read.
        """

    def write(self, offset: int, data: memoryview) -> None:
        """Write all of *data* at *offset*, allocating as needed.

        :raises UnsupportedOperationError: for read-only formats.
        """
        raise UnsupportedOperationError("This image format does not support writes")

    def write_zeroes(self, offset: int, length: int, *, unmap: bool = False) -> None:
        """Make the range read as zeros; with *unmap*, the format may deallocate it.

        The default writes zero buffers; formats with zero states override it.
        """
        chunk = bytes(min(length, 1 << 20))
        end = offset + length
        while offset < end:
            n = min(len(chunk), end - offset)
            self.write(offset, memoryview(chunk)[:n])
            offset += n

    def discard(self, offset: int, length: int) -> None:
        """Hint that the range is no longer needed; may do nothing (as QEMU permits)."""

    def flush(self) -> None:
        """Make every completed write durable."""
        self.file.flush()

    def block_status(self, offset: int, length: int) -> Iterator[Extent]:
        """Yield extents covering ``[offset, offset + length)`` in order.

        The default says everything is data, as QEMU does for formats without block status.
        """
        yield Extent(offset, length, data=True, zero=False)

    def info(self) -> ImageInfo:
        """Format-level facts for ``info``."""
        return ImageInfo()

    def host_file(self) -> ImageFile | None:
        """The file that :attr:`Extent.host_offset` values point into, holding the data as plain bytes.

        Callers that copy data use it to skip holes in the file and to clone ranges instead of
        copying them (``convert``). A format whose payload is not plain bytes in one file
        (compressed, encrypted, elsewhere) returns None, and reports no host offsets.
        """
        return self.file

    # -- backing chains (differencing images); formats without them keep these defaults ----------

    def backing_link(self) -> BackingLink | None:
        """Where this image's parent is, or None for an image that has none."""
        return None

    def verify_parent(self, parent: FormatDriver) -> str | None:
        """Whether *parent* is the image this one was made on: None, or why not (one line)."""
        return None

    def child_defaults(self) -> dict[str, Any]:
        """Create options a new child of this image inherits unless given (e.g. the block size)."""
        return {}

    def link_parent(self, parent: FormatDriver, relative_name: str) -> None:
        """Make this (writable) image a differencing image of *parent*, or relink it to a new one.

        *relative_name* is the parent's path relative to this image's directory. Used by create
        with a backing file, rebase and commit.

        :raises UnsupportedOperationError: for formats without differencing images.
        :raises InvalidOptionError: when *parent* cannot be this image's parent (size, sectors).
        """
        raise UnsupportedOperationError("This image format does not support backing files")

    def truncate(self, size: int) -> None:
        """Change the virtual disk size to *size* bytes, crash-safe; growth reads as zeros.

        The host has checked that the image is writable and that a shrink was asked for
        explicitly; the driver checks that *size* suits the format.

        :raises UnsupportedOperationError: when the format cannot be resized (QEMU's text).
        :raises InvalidOptionError: for a size the format cannot have.
        """
        raise UnsupportedOperationError("Image format driver does not support resize")

    def close(self) -> None:
        """Write back what is pending and release format state; never closes :attr:`file`."""
