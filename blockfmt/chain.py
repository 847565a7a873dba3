"""Backing chains: a differencing image opened together with its parents, reads falling through.

A format driver says where its parent is (:meth:`~blockfmt.FormatDriver.backing_link`) and whether a
given image is that parent (:meth:`~blockfmt.FormatDriver.verify_parent`); this module, which knows
no format, finds and opens the parents down to an image without one, refuses loops, and hands each
driver a :class:`BackingView` of the chain below it. Reads of ranges a layer does not hold go to
that view; :func:`chain_extents` resolves allocation through the chain with QEMU's ``depth``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Set
from typing import TYPE_CHECKING, Any

from .driver import BackingLink, Extent
from .errors import BackingChainError, BlockFormatError, InvalidOptionError
from .records import Record

if TYPE_CHECKING:
    from .fileio import ImageFile
    from .host import FormatHooks, Host
    from .image import Image

__all__ = [
    "MAX_CHAIN_DEPTH",
    "BackingView",
    "ChildPlan",
    "attach_parents",
    "chain_extents",
    "plan_child",
]

#: parents opened below one image at most; a longer chain is refused (each holds a file open)
MAX_CHAIN_DEPTH = 256


class BackingView:
    """The chain below an image, as the image's driver reads it.

    Bytes past the end of a shorter parent read as zeros (as QEMU's backing files do).
    """

    def __init__(self, parent: Image) -> None:
        self.parent = parent
        self.size = parent.size

    def readinto(self, offset: int, buf: memoryview) -> None:
        inside = max(0, min(len(buf), self.size - offset))
        if inside:
            self.parent.driver.readinto(offset, buf[:inside])
        if inside < len(buf):
            buf[inside:] = bytes(len(buf) - inside)


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _find_parent(link: BackingLink, child: Image, host: Host, force_share: bool) -> str:
    """The first candidate path that exists, else a file in the search directories the child accepts.

    :raises BackingChainError: naming every path tried.
    """
    for candidate in link.candidates:
        if os.path.isfile(candidate):
            return candidate
    tried = list(link.candidates)
    for directory in link.search_dirs:
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(directory)):
                path = os.path.join(directory, name)
                if os.path.isfile(path) and _is_parent_of(child, path, link.format, host, force_share):
                    return path
        tried.append(os.path.join(directory, "*"))
    if not tried:
        raise BackingChainError(f"Could not open backing file: '{link.display_name}' names no path to try")
    also = f" (also tried {', '.join(repr(p) for p in tried[1:])})" if len(tried) > 1 else ""
    raise BackingChainError(
        f"Could not open backing file: Could not open '{tried[0]}': No such file or directory{also}"
    )


def _is_parent_of(child: Image, path: str, format: str, host: Host, force_share: bool) -> bool:
    from .api import open as open_image
    from .api import probe

    try:
        if probe(path, host=host) != format:
            return False
        with open_image(path, format, force_share=force_share, open_backing=False, host=host) as candidate:
            return child.driver.verify_parent(candidate.driver) is None
    except BlockFormatError:
        return False


def attach_parents(
    image: Image,
    *,
    host: Host,
    force_share: bool,
    backing: str | None = None,
    backing_format: str | None = None,
    ignore_id_mismatch: bool = False,
) -> None:
    """Open every parent of *image*, read-only, and link each layer to the one below.

    *backing* and *backing_format* override the path and format the top image names (``Set-VHD
    -ParentPath``); *ignore_id_mismatch* skips the top link's identity check (``-IgnoreIdMismatch``).
    On error every parent opened so far is closed again.

    :raises BackingChainError: for a missing parent, an identity mismatch, a loop or a chain deeper
        than :data:`MAX_CHAIN_DEPTH`.
    """
    from .api import open as open_image

    seen = {_identity(image.filename)}
    child, top = image, True
    try:
        while True:
            link = child.driver.backing_link()
            if link is None:
                if top and backing is not None:
                    raise InvalidOptionError(f"'{image.filename}' is not a differencing image")
                return
            if len(seen) > MAX_CHAIN_DEPTH:
                raise BackingChainError(
                    f"Backing chain of '{image.filename}' is deeper than {MAX_CHAIN_DEPTH}"
                )
            path = backing if top and backing is not None else _find_parent(link, child, host, force_share)
            fmt = backing_format if top and backing_format is not None else link.format
            try:
                identity = _identity(path)
            except OSError as err:
                raise BackingChainError(
                    f"Could not open backing file '{path}' of '{child.filename}': {err.strerror}"
                ) from err
            if identity in seen:
                raise BackingChainError(f"Backing chain loop: '{path}' is its own ancestor")
            seen.add(identity)
            parent = open_image(path, fmt, force_share=force_share, open_backing=False, host=host)
            name = link.display_name
            if not link.candidates:  # found by identity (VDI): name the file found, from the child's dir
                name = os.path.relpath(path, os.path.dirname(os.path.abspath(child.filename)))
            child.set_backing(parent, name)
            reason = child.driver.verify_parent(parent.driver)
            if reason is not None and not (top and ignore_id_mismatch):
                raise BackingChainError(f"Backing file of '{child.filename}' does not match: {reason}")
            child, top = parent, False
    except BaseException:
        image.close_backing()
        raise


def chain_extents(image: Image, offset: int, length: int, depth: int = 0) -> Iterator[Extent]:
    """Allocation of ``[offset, offset + length)`` through the chain, each extent with its depth.

    A range no layer holds reads as zeros and is reported as QEMU does: not present, zero, at the
    depth of the bottom image.
    """
    for ext in image.driver.block_status(offset, length):
        if ext.present:
            yield Extent(ext.offset, ext.length, ext.data, ext.zero, ext.host_offset, True, depth)
            continue
        parent = image.backing
        inside = 0 if parent is None else max(0, min(ext.length, parent.size - ext.offset))
        if parent is not None and inside:
            yield from chain_extents(parent, ext.offset, inside, depth + 1)
        if inside < ext.length:
            bottom = depth if parent is None else depth + 1
            yield Extent(ext.offset + inside, ext.length - inside, False, True, None, False, bottom)


class ChildPlan(Record):
    """A parent opened for a new child image, and how the child names it.

    :ivar relative_name: the parent's path relative to the child's directory.
    """

    _fields = ("parent", "relative_name")
    __slots__ = _fields
    parent: Image
    relative_name: str

    def __init__(self, parent: Image, relative_name: str) -> None:
        self.parent = parent
        self.relative_name = relative_name

    def link(self, file: ImageFile, hooks: FormatHooks) -> None:
        """Turn the new, empty image in *file* (of the format *hooks* belong to) into a child of
        :attr:`parent`."""
        driver = hooks.open(file, False, {})
        try:
            driver.link_parent(self.parent.driver, self.relative_name)
        finally:
            driver.close()


def plan_child(
    target: str,
    format: str,
    backing: str,
    backing_format: str | None,
    options: dict[str, Any],
    given: Set[str],
    host: Host,
) -> tuple[ChildPlan, int]:
    """Open *backing* (with its own chain) for a new child at *target* and set in *options* what a
    child inherits (block size, sector sizes: the parent driver's ``child_defaults``) unless the
    caller *given* it.

    :returns: the plan and the parent's virtual size.
    :raises InvalidOptionError: when the parent's format is not the child's.
    """
    from .api import open as open_image

    child_dir = os.path.dirname(os.path.abspath(target))
    path = backing if os.path.isabs(backing) else os.path.join(child_dir, backing)
    parent = open_image(path, backing_format, host=host)
    try:
        if parent.format != format:
            raise InvalidOptionError(
                f"a {format} image needs a {format} backing file, and '{backing}' is {parent.format}"
            )
        for key, value in parent.driver.child_defaults().items():
            if key not in given:
                options[key] = value
    except BaseException:
        parent.close()
        raise
    return ChildPlan(parent, os.path.relpath(os.path.abspath(path), child_dir)), parent.size
