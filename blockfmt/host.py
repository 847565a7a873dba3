"""The plugin manager and a typed facade over its hooks.

``get_plugin_manager()`` loads every plugin of the ``blockfmt.formats`` entry-point group (the
built-ins come through the same group as third-party distributions). Set
``BLOCKFMT_DISABLE_PLUGIN_AUTOLOAD=1`` to skip entry points and register plugins by hand, e.g. to
rule out a broken third-party plugin.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable
from typing import Any

import pluggy

from . import hookspecs
from .driver import CheckResult, FormatDriver, FormatSpec, RepairMode
from .errors import PluginError, UnsupportedFormatError, UnsupportedOperationError
from .fileio import ImageFile
from .markers import PROJECT_NAME

__all__ = ["ENTRY_POINT_GROUP", "PROBE_SIZE", "Host", "default_host", "get_plugin_manager"]

ENTRY_POINT_GROUP = "blockfmt.formats"
#: bytes read from the start of a file for probing (QEMU's BLOCK_PROBE_BUF_SIZE)
PROBE_SIZE = 2048


def get_plugin_manager(
    plugins: Iterable[object] = (), *, autoload: bool | None = None
) -> pluggy.PluginManager:
    """Return a plugin manager with the hookspecs, the entry-point plugins and *plugins*.

    :param autoload: load the entry-point group; defaults to on unless
        ``BLOCKFMT_DISABLE_PLUGIN_AUTOLOAD`` is set.
    :raises PluginError: when a plugin implements an unknown hook or a wrong signature.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    if autoload is None:
        autoload = not os.environ.get("BLOCKFMT_DISABLE_PLUGIN_AUTOLOAD")
    try:
        if autoload:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        for plugin in plugins:
            pm.register(plugin)
        pm.check_pending()
    except pluggy.PluginValidationError as err:
        raise PluginError(f"invalid format plugin {err.plugin!r}: {err}") from err
    except (ImportError, AttributeError) as err:
        raise PluginError(f"format plugin failed to load: {err}") from err
    return pm


class Host:
    """Typed facade over the plugin manager: one method per hook, format bookkeeping.

    :param pm: a manager from :func:`get_plugin_manager`.
    :raises PluginError: when two plugins claim one format name.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.formats: dict[str, FormatSpec] = {}
        for impl in pm.hook.blockfmt_formats.get_hookimpls():
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
            for spec in impl.function() or ():
                if spec.name in self.formats:
                    other = self.formats[spec.name].plugin_name
                    raise PluginError(
                        f"format '{spec.name}' is provided by two plugins: '{other}' and '{plugin_name}'"
                    )
                self.formats[spec.name] = dataclasses.replace(spec, plugin_name=plugin_name)

    def spec(self, format: str) -> FormatSpec:
        """Return the :class:`FormatSpec` of *format*.

        :raises UnsupportedFormatError: when no plugin provides it (qemu-img's wording).
        """
        try:
            return self.formats[format]
        except KeyError:
            raise UnsupportedFormatError(f"Unknown file format '{format}'") from None

    def probe(self, head: bytes, filename: str) -> str:
        """Return the best-scoring format for a file starting with *head*.

        :raises UnsupportedFormatError: when no plugin recognises it (only if raw is absent).
        """
        answers = [a for a in self.pm.hook.blockfmt_probe(head=head, filename=filename) if a]
        if not answers:
            raise UnsupportedFormatError(f"Could not determine the format of '{filename}'")
        # Highest score wins; ties go to the first registered plugin, as in QEMU's driver list.
        return max(reversed(answers), key=lambda a: a[1])[0]

    def open_driver(
        self, format: str, file: ImageFile, read_only: bool, options: dict[str, Any]
    ) -> FormatDriver:
        """Ask the plugins to open *file* as *format*."""
        self.spec(format)
        driver = self.pm.hook.blockfmt_open(format=format, file=file, read_only=read_only, options=options)
        if driver is None:
            raise UnsupportedFormatError(f"format '{format}' has no plugin that can open it")
        return driver

    def create(
        self, format: str, file: ImageFile, size: int, options: dict[str, Any], *, exact: bool = False
    ) -> None:
        """Ask the plugins to write a new image of *format* into *file* (see ``blockfmt_create``)."""
        created = self.pm.hook.blockfmt_create(
            format=format, file=file, size=size, options=options, exact=exact
        )
        if not created:
            raise UnsupportedOperationError(f"Format driver '{format}' does not support image creation")

    def check(self, format: str, driver: FormatDriver, repair: RepairMode) -> CheckResult:
        """Ask the plugins to check an open image."""
        result = self.pm.hook.blockfmt_check(format=format, driver=driver, repair=repair)
        if result is None:
            raise UnsupportedOperationError("This image format does not support checks")
        return result


@functools.cache
def default_host() -> Host:
    """The process-wide host with every installed plugin, built on first use."""
    return Host(get_plugin_manager())
