"""Merge a differencing image into its parent (``qemu-img commit``), and relink it afterwards.

Only the ranges the child itself holds are copied, each through the parent's ordinary write path,
so the parent stays a valid image at every step: a VHDX parent commits every allocation through its
log, a VDI parent writes block data before the map entry that makes it visible. Once the parent
is flushed, the child is linked to the parent's new identity (a VHDX parent has a new DataWriteGuid
after any write), so the chain opens and reads exactly as before. The child keeps its data
(``qemu-img commit -d``): emptying it is not implemented.
"""

from __future__ import annotations

import os

from .api import open as open_image
from .driver import FormatDriver
from .errors import InvalidOptionError
from .host import Host, default_host
from .image import Image
from .progress import Progress, ProgressCallback

__all__ = ["COPY_CHUNK", "commit", "copy_child"]

#: bytes copied per request
COPY_CHUNK = 4 << 20


def commit(
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    progress: ProgressCallback | None = None,
    host: Host | None = None,
) -> int:
    """Write what the differencing image at *path* holds into its parent; returns the bytes copied.

    :param progress: called with the percentage of the child's data copied (0.0 first, 100.0 last).
    :raises InvalidOptionError: when the image has no backing file (qemu-img's wording).
    :raises BackingChainError: when its parent is missing or mismatched.
    """
    host = host or default_host()
    with open_image(path, format, host=host) as child:
        if child.backing is None:
            raise InvalidOptionError("Image does not have a backing file")
        parent_path, parent_format = child.backing.filename, child.backing.format
        child_format = child.format
    with open_image(parent_path, parent_format, read_only=False, host=host) as parent:
        with open_image(path, child_format, open_backing=False, host=host) as alone:
            copied = copy_child(alone, parent.driver, progress)
        parent.flush()
        with open_image(path, child_format, read_only=False, open_backing=False, host=host) as relinked:
            child_dir = os.path.dirname(os.path.abspath(os.fspath(path)))
            relinked.driver.link_parent(parent.driver, os.path.relpath(parent_path, child_dir))
    return copied


def copy_child(child: Image, parent: FormatDriver, progress: ProgressCallback | None = None) -> int:
    """Write every range the *child* (opened alone) holds into the *parent* driver; returns the bytes."""
    held = [ext for ext in child.map() if ext.present]
    reporter = Progress(sum(ext.length for ext in held), progress)
    copied = 0
    for ext in held:
        for offset in range(ext.offset, ext.offset + ext.length, COPY_CHUNK):
            length = min(COPY_CHUNK, ext.offset + ext.length - offset)
            if ext.zero and not ext.data:
                parent.write_zeroes(offset, length)
            else:
                parent.write(offset, memoryview(child.read_at(offset, length)))
            copied += length
            reporter.advance_to(copied)
    reporter.finish()
    return copied
