"""Opening an image from a command line, as QEMU's tools do (shared by blockfmt-img and blockfmt-io).

A plain file name is opened through :func:`blockfmt.open`. A ``json:{...}`` name, ``--image-opts``
or qemu-io's ``open -o`` give a node tree (:mod:`blockfmt.cli.blockdev_opts`), opened here bottom up:
the ``file`` node is a host file, every format node above it reads and writes the node below it
through :class:`ImageAsFile` (QEMU's format over format, e.g. raw over vhdx).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping
from typing import Any

from ..api import open as open_image
from ..cache import CacheMode
from ..chain import attach_parents
from ..errors import BlockIOError, InvalidOptionError, UnsupportedFormatError
from ..fileio import ImageFile, OsImageFile, clone_file_range
from ..host import PROBE_SIZE, Host
from ..image import Image
from ..locking import open_lock_request
from .blockdev_opts import (
    JSON_PREFIX,
    PROTOCOL_FILE,
    FileNode,
    FormatNode,
    Node,
    build_node,
    check_format_options,
    parse_image_opts,
    parse_json_filename,
)
from .report import Reporter

__all__ = ["PROBED_RAW_WARNING", "ImageAsFile", "open_from_cli", "open_node"]

#: block.c prints this when probing fell back to raw on a writable open (raw, the format without
#: metadata, is the probe fallback)
PROBED_RAW_WARNING = (
    "WARNING: Image format was not specified for '{0}' and probing guessed raw.\n"
    "         Automatically detecting the format is dangerous for raw images, "
    "write operations on block 0 will be restricted.\n"
    "         Specify the 'raw' format explicitly to remove the restrictions.\n"
)


def open_from_cli(
    reporter: Reporter,
    host: Host,
    filename: str | None,
    format: str | None,
    *,
    read_only: bool,
    force_share: bool = False,
    image_opts: bool = False,
    options: Mapping[str, Any] | None = None,
    cache: CacheMode = CacheMode.WRITEBACK,
    snapshot: bool = False,
) -> Image:
    """Open *filename* (a file, a ``json:{...}`` name, or with *image_opts* an option string).

    :param options: qemu-io ``open -o`` options, already parsed (nested); *filename* may be None then.
    :param snapshot: qemu-io ``-s``: writes go to a throw-away copy, the image file stays untouched.
    :param cache: the image's cache mode (``-t``), see :class:`blockfmt.CacheMode`.
    The caller adds the ``Could not open`` / ``can't open device`` context to errors.

    :raises UnsupportedFormatError: ``Unknown driver '<fmt>'`` for an unknown ``-f`` value.
    :raises InvalidOptionError: for a bad option tree, with QEMU's message.
    """
    tree: dict[str, Any] | None = None
    if image_opts:
        tree = parse_image_opts(filename or "", lambda text: reporter.error(f"warning: {text}"))
        filename = None
    elif filename is not None and filename.startswith(JSON_PREFIX):
        tree = parse_json_filename(filename)
        filename = None
    if options or snapshot or filename is None:
        tree = {**(tree or {}), **(options or {})}  # -s needs the node path; so does a missing name
    if format is not None and format not in host.formats:
        raise UnsupportedFormatError(f"Unknown driver '{format}'")
    if tree is None and filename is not None:
        image = open_image(
            filename, format, read_only=read_only, force_share=force_share, host=host, cache=cache
        )
        probed = format is None
    else:
        node = build_node(tree, filename=filename, format=format, known_formats=host.formats)
        image = open_node(
            host, node, read_only=read_only, force_share=force_share, snapshot=snapshot, cache=cache
        )
        probed = isinstance(node, FormatNode) and node.driver is None
    if probed and image.spec.data_only and not read_only:
        reporter.err(PROBED_RAW_WARNING.format(image.filename))
    return image


def image_path(host: Host, filename: str, format: str | None, *, image_opts: bool) -> tuple[str, str | None]:
    """The host file and format a command line names, for commands that work on paths (``commit``,
    ``rebase``): a plain name, or a ``json:`` name / ``--image-opts`` string that is a format over
    a file with no other options.

    :raises InvalidOptionError: for a bad option tree (QEMU's message), or one with more than that.
    """
    if image_opts:
        tree = parse_image_opts(filename)
    elif filename.startswith(JSON_PREFIX):
        tree = parse_json_filename(filename)
    else:
        return filename, format
    node = build_node(tree, filename=None, format=format, known_formats=host.formats)
    if isinstance(node, FileNode):
        return node.filename, "raw"
    if isinstance(node.file, FileNode) and not node.options:
        return node.file.filename, node.driver
    raise InvalidOptionError("blockfmt: this command takes a format over a plain file, without other options")


def open_node(
    host: Host,
    node: Node,
    *,
    read_only: bool,
    force_share: bool,
    snapshot: bool = False,
    cache: CacheMode = CacheMode.WRITEBACK,
) -> Image:
    """Open a node tree bottom up; a bare ``file`` node opens as raw (QEMU's protocol node).

    With *snapshot* the host file is opened read-only and copied to a deleted temporary file, on
    which the tree opens writable: QEMU's ``-s`` puts a temporary overlay on top instead, with the
    same effect for every command (writes visible until close, the image untouched).

    :raises InvalidOptionError: ``Block node is read-only`` for a ``read-only=on`` node in a writable open.
    """
    if node.read_only and not read_only:
        raise InvalidOptionError("Block node is read-only")
    force_share = force_share or node.force_share
    if isinstance(node, FileNode):
        node = FormatNode(host.data_only_format(), node)
    child = node.file
    file: ImageFile
    if isinstance(child, FileNode):
        if child.read_only and not read_only:
            raise InvalidOptionError("Block node is read-only")
        force_share = force_share or child.force_share
        if snapshot:
            file = SnapshotFile(child.filename, locking=child.locking)
            read_only = force_share = False
        else:
            kind = OsImageFile if child.driver in (None, PROTOCOL_FILE) else DeviceFile
            file = kind(
                child.filename, read_only=read_only, force_share=force_share, sync=not cache.ignores_flush
            )
        _check_file_type(child, file.base if isinstance(file, SnapshotFile) else file)
    else:
        inner = open_node(
            host, child, read_only=read_only, force_share=force_share, snapshot=snapshot, cache=cache
        )
        file = ImageAsFile(inner)
        read_only = inner.read_only
    try:
        format = node.driver or host.probe(file.pread(min(PROBE_SIZE, file.size()), 0), file.name)
        hooks = host.hooks(format)
        if isinstance(file, OsImageFile) and not isinstance(file, SnapshotFile) and child.locking:
            data_only = hooks.spec.data_only
            file.lock(open_lock_request(data_only=data_only, read_only=read_only, force_share=force_share))
        elif force_share and not read_only:
            open_lock_request(data_only=False, read_only=read_only, force_share=force_share)  # its refusal
        if node.options:
            file = _window(file, check_format_options(format, node.options))
        driver = hooks.open(file, read_only, {})
    except BaseException:
        file.close()
        raise
    image = Image(hooks, format, file, driver, read_only=read_only, cache=cache)
    try:
        attach_parents(image, host=host, force_share=force_share)  # a differencing image's chain
    except BaseException:
        image.close()
        raise
    return image


def _check_file_type(node: FileNode, file: OsImageFile) -> None:
    """file-posix's rule: ``file`` opens regular files only, the device drivers devices only."""
    if node.driver is None:
        return
    try:
        mode = os.fstat(file.fd).st_mode
        if node.driver == PROTOCOL_FILE and not stat.S_ISREG(mode):
            raise InvalidOptionError(f"'file' driver requires '{node.filename}' to be a regular file")
        if node.driver != PROTOCOL_FILE and not (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
            raise InvalidOptionError(
                f"'{node.driver}' driver requires '{node.filename}' to be either a character or block device"
            )
    except BaseException:
        file.close()
        raise


def _window(file: ImageFile, options: Mapping[str, int]) -> ImageFile:
    """raw's ``offset`` / ``size``: the format sees only that slice of its child."""
    total = file.size()
    offset = options.get("offset", 0)
    if offset > total:
        raise InvalidOptionError(
            f"Offset ({offset}) cannot be greater than size of the containing file ({total})"
        )
    size = options.get("size", total - offset)
    if offset + size > total:
        raise InvalidOptionError(
            f"The sum of offset ({offset}) and size ({size}) has to be smaller or equal to the "
            f" actual size of the containing file ({total})"
        )
    return WindowFile(file, offset, size)


class DeviceFile(OsImageFile):
    """A character or block device (``host_device``): character devices cannot sync, and that is
    no error (QEMU ignores it too)."""

    def flush(self) -> None:
        try:
            super().flush()
        except BlockIOError as err:
            if err.errno not in (errno.EINVAL, errno.EROFS):
                raise


class ImageAsFile(ImageFile):
    """An open :class:`Image` seen as the file of another format (format over format).

    The image's virtual disk is the file; it cannot grow, so writes past its end fail with EIO as
    they do in QEMU (a format node's size is fixed).
    """

    def __init__(self, image: Image) -> None:
        self.image = image
        self.name = image.filename
        self.read_only = image.read_only

    def preadinto(self, buf: memoryview | bytearray, offset: int) -> int:
        count = max(0, min(len(buf), self.image.size - offset))
        if count:
            self.image.readinto_at(offset, memoryview(buf)[:count])
        return count

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        if offset + len(data) > self.image.size:
            raise BlockIOError("write beyond the end of the image node", errno=errno.EIO)
        self.image.write_at(offset, data)

    def size(self) -> int:
        return self.image.size

    def truncate(self, length: int) -> None:
        if length != self.image.size:
            raise BlockIOError("Cannot resize an image node used as a file", errno=errno.ENOTSUP)

    def flush(self) -> None:
        self.image.flush()

    def punch_hole(self, offset: int, length: int) -> None:
        self.image.write_zeroes(offset, length, unmap=True)

    def close(self) -> None:
        self.image.close()


class WindowFile(ImageFile):
    """A slice ``[offset, offset + size)`` of another file (raw's ``offset`` and ``size`` options)."""

    def __init__(self, file: ImageFile, offset: int, size: int) -> None:
        self.file = file
        self.offset = offset
        self.length = size
        self.name = file.name
        self.read_only = file.read_only

    def preadinto(self, buf: memoryview | bytearray, offset: int) -> int:
        count = max(0, min(len(buf), self.length - offset))
        return self.file.preadinto(memoryview(buf)[:count], self.offset + offset) if count else 0

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        if offset + len(data) > self.length:
            raise BlockIOError("write beyond the end of the raw window", errno=errno.EIO)
        self.file.pwrite(data, self.offset + offset)

    def size(self) -> int:
        return self.length

    def truncate(self, length: int) -> None:
        if length != self.length:
            raise BlockIOError("Cannot resize a raw node with an explicit size", errno=errno.ENOTSUP)

    def flush(self) -> None:
        self.file.flush()

    def punch_hole(self, offset: int, length: int) -> None:
        self.file.punch_hole(self.offset + offset, min(length, self.length - offset))

    def close(self) -> None:
        self.file.close()


class SnapshotFile(OsImageFile):
    """A writable, already deleted copy of a host file, for ``-s``; the original stays open read-only.

    The original is held (and locked as a read-only open that shares everything) until close, so
    nobody replaces it under us; the copy keeps the original's holes.
    """

    COPY_CHUNK = 1 << 20

    def __init__(self, path: str, *, locking: bool) -> None:
        import tempfile  # only -s needs it

        self._fd = None
        self.base = OsImageFile(path, read_only=True, force_share=True)
        try:
            if locking:
                self.base.lock(open_lock_request(data_only=True, read_only=True, force_share=True))
            fd, temp = tempfile.mkstemp(prefix="blockfmt-snapshot-", dir=os.environ.get("TMPDIR", "/var/tmp"))
            os.close(fd)
            try:
                super().__init__(temp, read_only=False)
            finally:
                os.unlink(temp)
            self.name = path
            self._copy_from_base()
        except BaseException:
            self.close()
            raise

    def _copy_from_base(self) -> None:
        size = self.base.size()
        for offset, length, is_data in self.base.data_runs(0, size):
            if is_data and not clone_file_range(self.base.fd, offset, self.fd, offset, length):
                end = offset + length
                while offset < end:
                    chunk = self.base.pread(min(self.COPY_CHUNK, end - offset), offset)
                    self.pwrite(chunk, offset)
                    offset += len(chunk)
        self.truncate(size)

    def close(self) -> None:
        super().close()
        self.base.close()
