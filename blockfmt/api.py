"""The functions behind ``blockfmt.open``, ``create`` and ``probe``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from .cache import CacheMode
from .chain import ChildPlan, attach_parents, plan_child
from .errors import InvalidOptionError
from .fileio import OsImageFile
from .host import PROBE_SIZE, FormatHooks, Host, default_host
from .image import Image
from .locking import CREATE_LOCK, open_lock_request
from .options import CreateOptions, check_open_options, coerce_create_options
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
    backing: str | os.PathLike[str] | None = None,
    backing_format: str | None = None,
    open_backing: bool = True,
    ignore_id_mismatch: bool = False,
    cache: CacheMode = CacheMode.WRITEBACK,
) -> Image:
    """Open the disk image at *path*, and the parents of a differencing image with it.

    :param format: the format name; probed from the file's first bytes when None.
    :param read_only: refuse writes and never modify the file.
    :param force_share: like qemu-img ``-U``: open read-only without taking QEMU-compatible
        locks, so an image another process is writing can be inspected.
    :param options: format-specific open options (e.g. VHDX ``log_replay="memory"``).
    :param backing: the parent's path, instead of the one the image names (parents are always
        opened read-only); *backing_format* its format.
    :param open_backing: False opens the image alone: ranges its parent would supply read as zeros
        (QEMU's ``backing: null``).
    :param ignore_id_mismatch: open the parent even when it is not the image the child was made on
        (Hyper-V's ``-IgnoreIdMismatch``); only what the child holds is then trustworthy.
    :param cache: when writes become durable (:class:`CacheMode`): by default (``writeback``) at
        :meth:`Image.flush` and at close; ``writethrough`` after every write; ``unsafe`` never.
    :returns: an :class:`Image`; close it (or use ``with``) to release the file and its parents.
    :raises UnsupportedFormatError: for an unknown format.
    :raises CorruptImageError: when the image is invalid.
    :raises BlockIOError: when the file cannot be opened.
    :raises BackingChainError: when a parent is missing, mismatched, or the chain loops.
    """
    host = host or default_host()
    file = OsImageFile(
        os.fspath(path), read_only=read_only, force_share=force_share, sync=not cache.ignores_flush
    )
    try:
        if format is None:
            format = host.probe(file.pread(min(PROBE_SIZE, file.size()), 0), file.name)
        hooks = host.hooks(format)
        file.lock(
            open_lock_request(data_only=hooks.spec.data_only, read_only=read_only, force_share=force_share)
        )
        driver = hooks.open(file, read_only, check_open_options(hooks.spec, options or {}))
    except BaseException:
        file.close()
        raise
    image = Image(hooks, format, file, driver, read_only=read_only, cache=cache)
    if open_backing:
        try:
            attach_parents(
                image,
                host=host,
                force_share=force_share,
                backing=None if backing is None else os.fspath(backing),
                backing_format=backing_format,
                ignore_id_mismatch=ignore_id_mismatch,
            )
        except BaseException:
            image.close()
            raise
    return image


def create(
    path: str | os.PathLike[str],
    format: str,
    size: int | None,
    typed: CreateOptions | None = None,
    *,
    exact: bool = False,
    in_place: bool = False,
    backing_file: str | None = None,
    backing_fmt: str | None = None,
    host: Host | None = None,
    **options: Any,
) -> None:
    """Create a new, empty image of *format* and virtual *size* bytes at *path*.

    Options are the format's ``-o`` options other than ``size``, by their qemu-img names
    (``block_size=8 << 20``) or QMP names (``**{"block-size": 8 << 20}``); strings are parsed
    as qemu-img parses them, typed values are taken as they are. A caller that has already
    checked them (:func:`blockfmt.options.coerce_create_options`) passes the result as *typed*
    instead of keywords.
    With *exact*, options behave as in QMP ``blockdev-create``: absent ones get no defaults and no
    value is rounded silently (the format reports what qemu-img would have rounded as an error).
    A regular file is built under a temporary name and renamed into place, so a failed create
    leaves an existing file at *path* untouched.

    :param typed: the options, typed already (then no keyword options may be given).
    :param in_place: write into the existing file *path* without a temporary name (the caller
        made *path* for the purpose, e.g. ``convert``'s own temporary target).
    :param backing_file: (qemu-img ``-b``) make the new image a differencing image of this parent:
        a path relative to the new image's directory, or absolute. *size* may then be None (the
        parent's size), and block and sector sizes default to the parent's.
    :param backing_fmt: (qemu-img ``-F``) the parent's format; probed when None.
    :raises InvalidOptionError: for a bad size or option, with qemu-img's message.
    :raises UnsupportedFormatError: for an unknown format.
    """
    host = host or default_host()
    hooks = host.hooks(format)
    if typed is None:
        typed = coerce_create_options(hooks.spec, options, fill_defaults=not exact)
    elif options:
        raise TypeError("create() takes typed options or keyword options, not both")
    values = dict(typed.values)
    values.pop("size", None)  # the size option is the *size* argument; qemu-img folds ``-o size=`` into it
    target = os.fspath(path)
    plan = None
    if backing_file:
        plan, parent_size = plan_child(
            target, format, str(backing_file), backing_fmt, values, typed.given, host
        )
        size = parent_size if size is None else size
    try:
        if not isinstance(size, int) or size < 0:
            raise InvalidOptionError("Image size must be a non-negative integer")
        if in_place or written_in_place(target):
            _write_new_image(hooks, target, target, size, values, exact, plan)
            return
        with _existing_locked(target), replaced_atomically(target) as temp:
            _write_new_image(hooks, temp, target, size, values, exact, plan)
    finally:
        if plan is not None:
            plan.parent.close()


def _write_new_image(
    hooks: FormatHooks,
    path: str,
    name: str,
    size: int,
    typed: dict[str, Any],
    exact: bool,
    plan: ChildPlan | None,
) -> None:
    """Have the format write its new image into the existing file *path*, shown as *name*; with a
    *plan*, link it to its parent before it is renamed into place."""
    file = OsImageFile(path, read_only=False)
    file.name = name
    try:
        file.lock(CREATE_LOCK)
        hooks.create(file, size, typed, exact=exact)
        if plan is not None:
            plan.link(file, hooks)
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
