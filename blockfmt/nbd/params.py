"""The ``key=value`` parameters ``blockfmt-nbd`` passes to the plugin on nbdkit's command line.

Both ends live here, so the launcher's spelling and the plugin's parsing cannot drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import InvalidOptionError
from .export import CacheMode, DiscardMode, ExportSettings

__all__ = ["DEFAULT_THREAD_MODEL", "PluginParams", "ThreadModel", "parse_params"]

E = TypeVar("E", bound=enum.Enum)


class ThreadModel(enum.Enum):
    """The two nbdkit thread models worth choosing between for one shared image.

    ``parallel`` lets nbdkit receive, decode and answer requests of all connections at once while
    :class:`~.export.Export` lets one request at a time into the image; ``serialize_all_requests``
    (nbdkit's Python default) makes nbdkit itself wait for each request before starting the next.
    ``benchmarks/nbd_bench.py`` measures both with parallel clients.
    """

    PARALLEL = "parallel"
    SERIALIZE_ALL_REQUESTS = "serialize_all_requests"


#: what ``blockfmt-nbd`` runs. Measured with ``benchmarks/nbd_bench.py`` (2 GiB VHDX, 2 shared cores
#: under load, medians of 3): nbdcopy with 4 connections 156 MiB/s parallel vs 107 serialised; 4
#: clients of 4 KiB random reads 5500 vs 7300 reads/s. Bulk copies (qemu-img convert, nbdcopy,
#: virt-v2v) are what exports are for, and they gain from nbdkit sending one reply while Python
#: fills the next buffer; small requests from many clients lose a little to GIL hand-offs.
DEFAULT_THREAD_MODEL = ThreadModel.PARALLEL


@dataclass(frozen=True)
class PluginParams:
    """Everything the plugin is told: the export and the thread model to run it with."""

    settings: ExportSettings
    thread_model: ThreadModel = DEFAULT_THREAD_MODEL
    #: advertise NBD multi-conn: only when more than one connection is allowed (``-e``), since
    #: clients such as nbdcopy then open several and would be refused by the connection limit
    multi_conn: bool = False

    def to_args(self) -> list[str]:
        """nbdkit command-line words (``file=...``), in an order :func:`parse_params` accepts."""
        s = self.settings
        args = [f"file={s.filename}"]
        if s.format is not None:
            args.append(f"format={s.format}")
        args += [
            f"readonly={'on' if s.read_only else 'off'}",
            f"cache={s.cache.value}",
            f"discard={s.discard.value}",
            f"thread-model={self.thread_model.value}",
            f"multi-conn={'on' if self.multi_conn else 'off'}",
        ]
        args += [f"open-option={key}={value}" for key, value in s.open_options.items()]
        return args


def parse_params(pairs: Iterable[tuple[str, str]]) -> PluginParams:
    """Rebuild the :class:`PluginParams` from nbdkit's ``config(key, value)`` calls.

    :raises InvalidOptionError: for an unknown key, a bad value or a missing ``file``.
    """
    filename: str | None = None
    fmt: str | None = None
    read_only = False
    cache = CacheMode.WRITEBACK
    discard = DiscardMode.IGNORE
    thread_model = DEFAULT_THREAD_MODEL
    multi_conn = False
    open_options: dict[str, str] = {}
    for key, value in pairs:
        if key == "file":
            filename = value
        elif key == "format":
            fmt = value
        elif key == "readonly":
            read_only = _on_off(key, value)
        elif key == "cache":
            cache = _enum_value(CacheMode, key, value)
        elif key == "discard":
            discard = DiscardMode.parse(value)
        elif key == "thread-model":
            thread_model = _enum_value(ThreadModel, key, value)
        elif key == "multi-conn":
            multi_conn = _on_off(key, value)
        elif key == "open-option":
            name, sep, option_value = value.partition("=")
            if not sep or not name:
                raise InvalidOptionError(f"open-option '{value}' is not KEY=VALUE")
            open_options[name] = option_value
        else:
            raise InvalidOptionError(f"unknown parameter '{key}'")
    if filename is None:
        raise InvalidOptionError("missing parameter 'file'")
    settings = ExportSettings(filename, fmt, read_only, cache, discard, open_options)
    return PluginParams(settings, thread_model, multi_conn)


def _on_off(key: str, value: str) -> bool:
    if value not in ("on", "off"):
        raise InvalidOptionError(f"parameter '{key}' expects 'on' or 'off', not '{value}'")
    return value == "on"


def _enum_value(kind: type[E], key: str, value: str) -> E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise InvalidOptionError(f"parameter '{key}' expects one of {allowed}, not '{value}'") from None
