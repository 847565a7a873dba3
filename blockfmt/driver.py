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
from typing import Any, Protocol

from .errors import UnsupportedOperationError
from .fileio import ImageFile
from .records import FrozenRecord, Record

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


class CreateOption(FrozenRecord):
    """One ``-o key=value`` option of a format, as ``qemu-img create -o help`` lists it.

    :ivar type: ``"size"``, ``"bool"``, ``"number"`` or ``"string"`` (QEMU's QemuOptType names).
    :ivar default: the value used when the option is absent; ``None`` when QEMU shows none.
    :ivar blockdev_name: the spelling in QMP ``blockdev-create`` (``log-size`` for ``log_size``).
    """

    _fields = ("name", "type", "help", "default", "blockdev_name")
    __slots__ = _fields
    name: str
    type: str
    help: str
    default: Any
    blockdev_name: str | None

    def __init__(
        self, name: str, type: str, help: str, default: Any = None, blockdev_name: str | None = None
    ) -> None:
        self._fill(name, type, help, default, blockdev_name)


class OpenOption(FrozenRecord):
    """One format-specific open option (``blockfmt.open(options=...)``, ``blockfmt-nbd -o``).

    The host checks every open against the options the format declares, so a driver receives
    only known keys with accepted values and needs no checks of its own.

    :ivar choices: the values it accepts.
    """

    _fields = ("name", "help", "choices")
    __slots__ = _fields
    name: str
    help: str
    choices: tuple[Any, ...]

    def __init__(self, name: str, help: str, choices: tuple[Any, ...]) -> None:
        self._fill(name, help, choices)


class FormatSpec(FrozenRecord):
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

    _fields = ("name", "description", "create_options", "data_only", "open_options", "plugin_name")
    __slots__ = _fields
    name: str
    description: str
    create_options: tuple[CreateOption, ...]
    data_only: bool
    open_options: tuple[OpenOption, ...]
    plugin_name: str

    def __init__(
        self,
        name: str,
        description: str,
        create_options: tuple[CreateOption, ...] = (),
        data_only: bool = False,
        open_options: tuple[OpenOption, ...] = (),
        plugin_name: str = "",
    ) -> None:
        self._fill(name, description, create_options, data_only, open_options, plugin_name)


class Extent(FrozenRecord):
    """One run of the virtual disk with a single allocation status (``qemu-img map``).

    :ivar data: bytes come from the image file (``data`` in qemu-img's JSON).
    :ivar zero: the range reads as zeros.
    :ivar host_offset: where the data lives in the image file, when it is there contiguously.
    :ivar present: the range is allocated in this image; a driver with a backing file yields
        ``data=False, zero=False, present=False`` for ranges its parent supplies.
    :ivar depth: how many backing links down the chain the range is allocated (QEMU's ``depth``).
    """

    _fields = ("offset", "length", "data", "zero", "host_offset", "present", "depth")
    __slots__ = _fields
    offset: int
    length: int
    data: bool
    zero: bool
    host_offset: int | None
    present: bool
    depth: int

    def __init__(
        self,
        offset: int,
        length: int,
        data: bool,
        zero: bool,
        host_offset: int | None = None,
        present: bool = True,
        depth: int = 0,
    ) -> None:
        self._fill(offset, length, data, zero, host_offset, present, depth)


class BackingLink(FrozenRecord):
    """What a differencing image says about its parent (``backing_link`` of a driver).

    :ivar display_name: the backing file name as ``qemu-img info`` shows it.
    :ivar candidates: paths to try, in order, already mapped to this host (the first existing
        file is opened); empty when the format stores no path (VDI) and the parent is searched.
    :ivar format: the parent's format name.
    :ivar search_dirs: directories to search for the parent by identity when no candidate exists.
    """

    _fields = ("display_name", "candidates", "format", "search_dirs")
    __slots__ = _fields
    display_name: str
    candidates: tuple[str, ...]
    format: str
    search_dirs: tuple[str, ...]

    def __init__(
        self, display_name: str, candidates: tuple[str, ...], format: str, search_dirs: tuple[str, ...] = ()
    ) -> None:
        self._fill(display_name, candidates, format, search_dirs)


class BackingReader(Protocol):
    """The parent as a differencing driver sees it: reads and allocation of the merged chain below."""

    size: int

    def readinto(self, offset: int, buf: memoryview) -> None: ...


class ImageInfo(FrozenRecord):
    """Format-level facts for ``qemu-img info``.

    :ivar cluster_size: the allocation unit (VHDX block size, VDI block size); ``None`` for raw.
    :ivar format_specific: extra facts; the CLI shows them only where qemu-img does (a new empty
        dict when not given).
    """

    _fields = ("cluster_size", "dirty", "format_specific")
    __slots__ = _fields
    cluster_size: int | None
    dirty: bool
    format_specific: dict[str, Any]

    def __init__(
        self,
        cluster_size: int | None = None,
        dirty: bool = False,
        format_specific: dict[str, Any] | None = None,
    ) -> None:
        self._fill(cluster_size, dirty, {} if format_specific is None else format_specific)


class CheckResult(Record):
    """What a consistency check found and fixed; mirrors QEMU's ``BdrvCheckResult``.

    :ivar messages: one line per problem, as qemu-img prints them on stderr (``ERROR ...``); a new
        empty list when not given.
    :ivar corruptions_fixed: counts repairs, including a VHDX log replayed on open.
    """

    _fields = (
        "corruptions",
        "leaks",
        "check_errors",
        "corruptions_fixed",
        "leaks_fixed",
        "image_end_offset",
        "total_clusters",
        "allocated_clusters",
        "fragmented_clusters",
        "compressed_clusters",
        "messages",
    )
    __slots__ = _fields
    corruptions: int
    leaks: int
    check_errors: int
    corruptions_fixed: int
    leaks_fixed: int
    image_end_offset: int | None
    total_clusters: int | None
    allocated_clusters: int | None
    fragmented_clusters: int | None
    compressed_clusters: int | None
    messages: list[str]

    def __init__(
        self,
        corruptions: int = 0,
        leaks: int = 0,
        check_errors: int = 0,
        corruptions_fixed: int = 0,
        leaks_fixed: int = 0,
        image_end_offset: int | None = None,
        total_clusters: int | None = None,
        allocated_clusters: int | None = None,
        fragmented_clusters: int | None = None,
        compressed_clusters: int | None = None,
        messages: list[str] | None = None,
    ) -> None:
        self.corruptions = corruptions
        self.leaks = leaks
        self.check_errors = check_errors
        self.corruptions_fixed = corruptions_fixed
        self.leaks_fixed = leaks_fixed
        self.image_end_offset = image_end_offset
        self.total_clusters = total_clusters
        self.allocated_clusters = allocated_clusters
        self.fragmented_clusters = fragmented_clusters
        self.compressed_clusters = compressed_clusters
        self.messages = [] if messages is None else messages

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
