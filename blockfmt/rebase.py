"""Give a differencing image another parent (``qemu-img rebase``).

Safe mode first copies into the image every range it does not hold itself whose bytes differ
between the old chain and the new parent, so the image reads the same afterwards; ``unsafe`` (``-u``)
only rewrites the link, for a parent that was moved or copied. The link is written last: a crash
before it leaves the old, still valid chain with some ranges now held by the child itself.
"""

from __future__ import annotations

import os

from .api import open as open_image
from .errors import InvalidOptionError
from .host import Host, default_host
from .image import Image
from .progress import Progress, ProgressCallback

__all__ = ["COMPARE_CHUNK", "rebase"]

#: bytes compared per request
COMPARE_CHUNK = 1 << 20


def rebase(
    path: str | os.PathLike[str],
    backing: str,
    *,
    format: str | None = None,
    backing_format: str | None = None,
    unsafe: bool = False,
    progress: ProgressCallback | None = None,
    host: Host | None = None,
) -> int:
    """Make *backing* (relative to the image's directory, or absolute) the parent of *path*.

    :param progress: called with the percentage of the old chain's ranges compared (0.0 first,
        100.0 last; with *unsafe* only those two).
    :returns: the bytes copied into the image (0 with *unsafe*).
    :raises InvalidOptionError: when the new parent's size differs.
    """
    host = host or default_host()
    child_dir = os.path.dirname(os.path.abspath(os.fspath(path)))
    new_path = backing if os.path.isabs(backing) else os.path.join(child_dir, backing)
    copied = 0
    with open_image(new_path, backing_format, host=host) as new_parent:
        if new_parent.size != _virtual_size(path, format, host):
            raise InvalidOptionError(f"'{backing}' does not have the size of '{os.fspath(path)}'")
        if not unsafe:
            copied = _copy_differences(path, format, new_parent, host, progress)
        elif progress is not None:
            Progress(0, progress).finish()
        with open_image(path, format, read_only=False, open_backing=False, host=host) as image:
            image.driver.link_parent(new_parent.driver, os.path.relpath(os.path.abspath(new_path), child_dir))
    return copied


def _virtual_size(path: str | os.PathLike[str], format: str | None, host: Host) -> int:
    """The image's own size, read without opening its (old) chain."""
    with open_image(path, format, open_backing=False, host=host) as image:
        return image.size


def _copy_differences(
    path: str | os.PathLike[str],
    format: str | None,
    new_parent: Image,
    host: Host,
    progress: ProgressCallback | None,
) -> int:
    """Copy into *path* what its old chain and *new_parent* read differently, where it falls through."""
    copied = compared = 0
    with open_image(path, format, read_only=False, host=host) as image:
        inherited = [ext for ext in image.map() if ext.depth != 0]
        reporter = Progress(sum(ext.length for ext in inherited), progress)
        for ext in inherited:
            for offset in range(ext.offset, ext.offset + ext.length, COMPARE_CHUNK):
                length = min(COMPARE_CHUNK, ext.offset + ext.length - offset)
                old = image.read_at(offset, length)
                if new_parent.read_at(offset, length) != old:
                    image.write_at(offset, old)
                    copied += length
                compared += length
                reporter.advance_to(compared)
        image.flush()
        reporter.finish()
    return copied
