"""nbdkit's Python plugin callbacks (API version 2) over one shared :class:`~.export.Export`.

Only importable inside nbdkit (``import nbdkit``); :mod:`.nbdkit_script` re-exports these names
into the ``__main__`` module nbdkit looks them up in.

Life cycle: ``config`` collects ``blockfmt-nbd``'s parameters, ``get_ready`` opens the image once
(taking its QEMU-compatible locks before nbdkit listens or forks, so a refused open is reported in
the foreground with a non-zero exit), every ``open`` hands out that same export, and ``cleanup``
flushes and closes it when nbdkit shuts down.

Errors: every request callback turns an exception into ``nbdkit.set_error(errno)`` plus a short
exception (nbdkit logs it and answers the client with the NBD error); nothing escapes as a crash.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import nbdkit

from .export import Export, errno_for, open_export
from .params import PluginParams, ThreadModel, parse_params

__all__ = [
    "API_VERSION",
    "can_extents",
    "can_flush",
    "can_fua",
    "can_multi_conn",
    "can_trim",
    "can_write",
    "can_zero",
    "cleanup",
    "config",
    "config_complete",
    "extents",
    "flush",
    "get_ready",
    "get_size",
    "open",
    "pread",
    "pwrite",
    "thread_model",
    "trim",
    "zero",
]

API_VERSION = 2

F = TypeVar("F", bound=Callable[..., Any])

_config_pairs: list[tuple[str, str]] = []
_params: PluginParams | None = None
_export: Export | None = None


class RequestError(Exception):
    """What nbdkit logs for a failed callback: the library's one-line message, no library traceback."""


def _reported(callback: F) -> F:
    """Run *callback*; on failure set the errno the client should see and raise a one-line error."""

    @functools.wraps(callback)
    def wrapper(*args: Any) -> Any:
        try:
            return callback(*args)
        except Exception as err:
            nbdkit.set_error(errno_for(err))
            raise RequestError(f"{callback.__name__}: {err}") from None

    return wrapper  # type: ignore[return-value]


# -- server life cycle --------------------------------------------------------------------------


def config(key: str, value: str) -> None:
    _config_pairs.append((key, value))


@_reported
def config_complete() -> None:
    global _params
    _params = parse_params(_config_pairs)


def thread_model() -> int:
    assert _params is not None
    if _params.thread_model is ThreadModel.SERIALIZE_ALL_REQUESTS:
        return nbdkit.THREAD_MODEL_SERIALIZE_ALL_REQUESTS
    return nbdkit.THREAD_MODEL_PARALLEL


@_reported
def get_ready() -> None:
    global _export
    assert _params is not None
    _export = open_export(_params.settings)


def cleanup() -> None:
    if _export is not None:
        _export.close()


# -- per connection ------------------------------------------------------------------------------


def open(readonly: bool) -> Export:
    assert _export is not None
    return _export


def get_size(h: Export) -> int:
    return h.size


def can_write(h: Export) -> bool:
    return h.writable


can_flush = can_trim = can_zero = can_write


def can_fua(h: Export) -> int:
    return nbdkit.FUA_NATIVE


def can_multi_conn(h: Export) -> bool:
    """Safe whenever asked for: every connection reaches the same image and a flush flushes all of it."""
    assert _params is not None
    return _params.multi_conn


def can_extents(h: Export) -> bool:
    return True


# -- requests ----------------------------------------------------------------------------------


@_reported
def pread(h: Export, buf: bytearray, offset: int, flags: int) -> None:
    h.pread(memoryview(buf), offset)


@_reported
def pwrite(h: Export, buf: bytes, offset: int, flags: int) -> None:
    h.pwrite(memoryview(buf), offset, fua=bool(flags & nbdkit.FLAG_FUA))


@_reported
def zero(h: Export, count: int, offset: int, flags: int) -> None:
    h.zero(count, offset, may_trim=bool(flags & nbdkit.FLAG_MAY_TRIM), fua=bool(flags & nbdkit.FLAG_FUA))


@_reported
def trim(h: Export, count: int, offset: int, flags: int) -> None:
    h.trim(count, offset, fua=bool(flags & nbdkit.FLAG_FUA))


@_reported
def flush(h: Export, flags: int) -> None:
    h.flush()


@_reported
def extents(h: Export, count: int, offset: int, flags: int) -> list[tuple[int, int, int]]:
    return list(h.extents(count, offset, req_one=bool(flags & nbdkit.FLAG_REQ_ONE)))
