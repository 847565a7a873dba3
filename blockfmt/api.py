"""The functions behind ``blockfmt.open``, ``create`` and ``probe``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import InvalidOptionError
from .fileio import OsImageFile
from .host import PROBE_SIZE, FormatHooks, Host, default_host
from .image import Image
from .locking import CREATE_LOCK, open_lock_request
from .options import coerce_create_options
from .replace import replaced_atomically, written_in_place

__all__ = ["create", "open", "probe"]


def probe(path: str | os.PathLike[str], *, host: Host | None = None) -> str:
    """Return the format name of the image at *path*, by its first bytes.

    :raises BlockIOError: when the file cannot be read.
    """
    host = host or default_host()
    file = OsImageFile(os.fspath(path), read_only=True)
    try:
        return host.probe(file.pread(min(PROBE_SIZE, file.size()), 0), file.name)
    finally:
        file.close()


def open(
    path: str | os.PathLike[str],
    format: str | None = None,
    read_only: bool = True,
    *,
    force_share: bool = False,
    options: Mapping[str, Any] | None = None,
    host: Host | None = None,
) -> Image:
    """Open the disk image at *path*.

    :param format: the format name; probed from the file's first bytes when None.
    :param read_only: refuse writes and never modify the file.
    :param force_share: like qemu-img ``-U``: open read-only without taking QEMU-compatible
        locks, so an image another process is writing can be inspected.
    :param options: format-specific open options (e.g. VHDX ``log_replay="memory"``).
    :returns: an :class:`Image`; close it (or use ``with``) to release the file.
    :raises UnsupportedFormatError: for an unknown format.
    :raises CorruptImageError: when the image is invalid.
    :raises BlockIOError: when the file cannot be opened.
    """
    host = host or default_host()
    file = OsImageFile(os.fspath(path), read_only=read_only, force_share=force_share)
    try:
        if format is None:
            format = host.probe(file.pread(min(PROBE_SIZE, file.size()), 0), file.name)
        hooks = host.hooks(format)
        file.lock(
            open_lock_request(data_only=hooks.spec.data_only, read_only=read_only, force_share=force_share)
        )
        driver = hooks.open(file, read_only, dict(options or {}))
    except BaseException:
        file.close()
        raise
    return Image(hooks, format, file, driver, read_only=read_only)


def create(
    path: str | os.PathLike[str],
    format: str,
    size: int,
    *,
    exact: bool = False,
    in_place: bool = False,
    host: Host | None = None,
    **options: Any,
) -> None:
    """Create a new, empty image of *format* and virtual *size* bytes at *path*.

    Options are the format's ``-o`` options other than ``size``, by their qemu-img names
    (``block_size=8 << 20``) or QMP names (``**{"block-size": 8 << 20}``); strings are parsed
    as qemu-img parses them, typed values are taken as they are.
    With *exact*, options behave as in QMP ``blockdev-create``: absent ones get no defaults and no
    value is rounded silently (the format reports what qemu-img would have rounded as an error).
    A regular file is built under a temporary name and renamed into place, so a failed create
    leaves an existing file at *path* untouched.

    :param in_place: write into the existing file *path* without a temporary name (the caller
        made *path* for the purpose, e.g. ``convert``'s own temporary target).
    :raises InvalidOptionError: for a bad size or option, with qemu-img's message.
    :raises UnsupportedFormatError: for an unknown format.
    """
    host = host or default_host()
    hooks = host.hooks(format)
    if not isinstance(size, int) or size < 0:
        raise InvalidOptionError("Image size must be a non-negative integer")
    typed = coerce_create_options(hooks.spec, options, fill_defaults=not exact)
    typed.pop("size", None)  # the size option is the *size* argument; qemu-img folds ``-o size=`` into it
    target = os.fspath(path)
    if in_place or written_in_place(target):
        _write_new_image(hooks, target, target, size, typed, exact)
        return
    with _existing_locked(target), replaced_atomically(target) as temp:
        _write_new_image(hooks, temp, target, size, typed, exact)


def _write_new_image(
    hooks: FormatHooks, path: str, name: str, size: int, typed: dict[str, Any], exact: bool
) -> None:
    """Have the format write its new image into the existing file *path*, shown as *name*."""
    file = OsImageFile(path, read_only=False)
    file.name = name
    try:
        file.lock(CREATE_LOCK)
        hooks.create(file, size, typed, exact=exact)
        file.flush()
    finally:
        file.close()


@contextlib.contextmanager
def _existing_locked(target: str) -> Iterator[None]:
    """Hold qemu-img create's locks on the file *target* names, so an image in use is never replaced."""
    if not os.path.exists(target):
        yield
        return
    file = OsImageFile(target, read_only=True)
    try:
        file.lock(CREATE_LOCK)
        yield
    finally:
        file.close()
