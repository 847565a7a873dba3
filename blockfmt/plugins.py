"""Finding and loading format plugins, each in isolation from the others.

The built-in plugins (``raw``, ``vhdx``, ``vdi``) are registered by module name; third-party
plugins come through the ``blockfmt.formats`` entry-point group of the distributions they ship in.
As in pytest, disabling autoload (``BLOCKFMT_DISABLE_PLUGIN_AUTOLOAD=1``) skips entry points but
keeps the built-ins, and ``BLOCKFMT_PLUGINS=a,b`` loads only the entry points named.

Entry points are read straight from the ``entry_points.txt`` files of the ``*.dist-info`` and
``*.egg-info`` directories on :data:`sys.path`, and the metadata headers only of distributions
that declare a ``blockfmt.formats`` entry point: :mod:`importlib.metadata` (what pluggy's
``load_setuptools_entrypoints`` uses) imports the email parser and reads every installed
distribution's metadata, about 90 ms of what was a 200 ms ``blockfmt-img info``.

A plugin that cannot be imported or registered (a missing dependency, a syntax error, a hook
pluggy rejects) does not take the others down: it is skipped and recorded as a
:class:`PluginRecord` whose ``error`` is one line naming the entry point and its distribution.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Iterator

import pluggy

from . import hookspecs
from .errors import PluginError
from .markers import PROJECT_NAME
from .records import FrozenRecord

__all__ = [
    "AUTOLOAD_DISABLE_ENV",
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "SELECT_ENV",
    "EntryPoint",
    "PluginManager",
    "PluginRecord",
    "find_entry_points",
    "load_plugins",
]

ENTRY_POINT_GROUP = "blockfmt.formats"
#: set (to anything non-empty) to load no entry-point plugins; the built-ins stay
AUTOLOAD_DISABLE_ENV = "BLOCKFMT_DISABLE_PLUGIN_AUTOLOAD"
#: comma-separated entry-point names: load only these third-party plugins
SELECT_ENV = "BLOCKFMT_PLUGINS"
#: plugin name -> module, registered before any entry point
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("raw", "blockfmt.raw"),
    ("vhdx", "blockfmt_vhdx.plugin"),
    ("vdi", "blockfmt_vdi.plugin"),
)
BUILTIN_SOURCE = "built-in"
#: the source of plugins passed to :func:`load_plugins` by the caller
BY_HAND_SOURCE = "registered by hand"

#: the endings of distribution metadata directories (``name-version.dist-info``)
_METADATA_SUFFIXES = (".dist-info", ".egg-info")


class EntryPoint(FrozenRecord):
    """One ``name = module[:attr]`` line of a distribution's ``entry_points.txt``.

    :ivar distribution: ``"name version"`` of the distribution that declares it.
    """

    _fields = ("name", "value", "distribution")
    __slots__ = _fields
    name: str
    value: str
    distribution: str

    def __init__(self, name: str, value: str, distribution: str) -> None:
        self._fill(name, value, distribution)

    def load(self) -> object:
        """Import the module and return the object the entry point names."""
        module_name, _, attr_path = self.value.partition(":")
        target: object = importlib.import_module(module_name.strip())
        for attr in filter(None, attr_path.strip().split(".")):
            target = getattr(target, attr)
        return target


class PluginRecord(FrozenRecord):
    """What became of one plugin the host tried to load.

    :ivar source: ``"built-in"``, or the distribution (``"name version"``) declaring the entry point.
    :ivar error: one line saying why the plugin was skipped; None when it is registered.
    """

    _fields = ("name", "source", "target", "error")
    __slots__ = _fields
    name: str
    source: str
    target: str
    error: str | None

    def __init__(self, name: str, source: str, target: str, error: str | None = None) -> None:
        self._fill(name, source, target, error)


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers every plugin it tried to load, loaded or not."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []

    def add_isolated(self, name: str, source: str, target: str, load: object) -> bool:
        """Import (via *load*, a callable returning the plugin) and register one plugin.

        Any failure is recorded instead of raised, and leaves no hook of the plugin registered.

        :returns: whether the plugin is now registered.
        """
        plugin: object = None
        try:
            plugin = load()  # type: ignore[operator]
            self.register(plugin, name=name)
            self.check_pending()
        except Exception as err:  # a third party's import may raise anything; it must not stop the others
            if plugin is not None and self.is_registered(plugin):
                self.unregister(plugin)
            self.records.append(PluginRecord(name, source, target, _load_error(name, source, err)))
            return False
        self.records.append(PluginRecord(name, source, target))
        return True

    def is_discovered(self, name: str) -> bool:
        """Whether plugin *name* was loaded by this manager itself (built-in or entry point)."""
        return any(r.name == name and r.error is None and r.source != BY_HAND_SOURCE for r in self.records)

    def reject(self, name: str, reason: str) -> None:
        """Unregister the discovered plugin *name* and record *reason* as its load error."""
        plugin = self.get_plugin(name)
        if plugin is not None:
            self.unregister(plugin)
        self.records = [
            PluginRecord(r.name, r.source, r.target, f"format plugin '{name}' is skipped: {reason}")
            if r.name == name
            else r
            for r in self.records
        ]


def load_plugins(
    plugins: Iterable[object] = (),
    *,
    autoload: bool | None = None,
    only: Iterable[str] | None = None,
    builtins: bool = True,
) -> PluginManager:
    """Return a manager with the built-ins, the entry-point plugins and *plugins* registered.

    :param plugins: registered by hand, after the others; errors in them are raised.
    :param autoload: load the entry-point group; defaults to on unless
        ``BLOCKFMT_DISABLE_PLUGIN_AUTOLOAD`` is set.
    :param only: entry-point names to load (others are ignored); defaults to ``BLOCKFMT_PLUGINS``
        when set. A name no installed distribution declares is recorded as an error.
    :param builtins: register ``raw``, ``vhdx`` and ``vdi``.
    :raises PluginError: when a plugin given in *plugins* implements an unknown hook or a wrong
        signature.
    """
    pm = PluginManager()
    builtin_modules = {module for _, module in BUILTIN_PLUGINS}
    if builtins:
        for name, module in BUILTIN_PLUGINS:
            pm.add_isolated(
                name, BUILTIN_SOURCE, module, lambda module=module: importlib.import_module(module)
            )
    if only is None and os.environ.get(SELECT_ENV):
        only = os.environ[SELECT_ENV].split(",")
    selected = None if only is None else {name.strip() for name in only if name.strip()}
    if autoload is None:
        autoload = not os.environ.get(AUTOLOAD_DISABLE_ENV) or selected is not None
    if autoload:
        for entry in find_entry_points(ENTRY_POINT_GROUP):
            # Older installs of blockfmt itself declared the built-ins as entry points too.
            if entry.value.partition(":")[0].strip() in builtin_modules:
                continue
            if (selected is not None and entry.name not in selected) or pm.has_plugin(entry.name):
                continue
            pm.add_isolated(entry.name, entry.distribution, entry.value, entry.load)
        for missing in sorted((selected or set()) - {record.name for record in pm.records}):
            pm.records.append(
                PluginRecord(
                    missing, "", "", f"format plugin '{missing}' named in {SELECT_ENV} is not installed"
                )
            )
    for plugin in plugins:
        try:
            pm.register(plugin)
            pm.check_pending()
        except pluggy.PluginValidationError as err:
            raise PluginError(f"invalid format plugin {err.plugin!r}: {err}") from err
        pm.records.append(PluginRecord(pm.get_name(plugin) or repr(plugin), BY_HAND_SOURCE, repr(plugin)))
    return pm


def find_entry_points(group: str, path: Iterable[str] | None = None) -> list[EntryPoint]:
    """Every entry point of *group* declared by a distribution on *path* (default :data:`sys.path`).

    Only distributions with an ``entry_points.txt`` are read. A distribution found twice counts
    once, the first on the path winning, as :mod:`importlib.metadata` decides.
    """
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for directory in sys.path if path is None else path:
        for meta_dir, name, version in _metadata_dirs(directory or "."):
            key = _normalize(name)
            if key in seen:
                continue
            seen.add(key)
            try:
                with open(os.path.join(meta_dir, "entry_points.txt"), encoding="utf-8") as stream:
                    text = stream.read()
            except OSError:
                continue
            if group not in text:  # most distributions declare no plugin: skip parsing their file
                continue
            lines = list(_group_lines(text, group))
            if lines:
                distribution = _distribution_label(meta_dir) or f"{name} {version}".strip()
                found.extend(EntryPoint(ep_name, value, distribution) for ep_name, value in lines)
    return found


def _distribution_label(meta_dir: str) -> str | None:
    """``"Name Version"`` from the metadata headers, spelt as the author spells the name."""
    fields: dict[str, str] = {}
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(meta_dir, filename), encoding="utf-8") as stream:
                for line in stream:
                    if not line.strip():
                        break  # the headers end at the first blank line
                    key, sep, value = line.partition(":")
                    if sep and key in ("Name", "Version"):
                        fields.setdefault(key, value.strip())
        except OSError:
            continue
        break
    return f"{fields['Name']} {fields.get('Version', '')}".strip() if "Name" in fields else None


def _metadata_dirs(directory: str) -> Iterator[tuple[str, str, str]]:
    """``(path, name, version)`` of the distribution metadata directories in *directory*."""
    try:
        entries = os.listdir(directory)
    except OSError:  # a zip file, a missing directory: nothing installed there that we can read
        return
    # only the metadata directories are looked at (and sorted): the standard library's directory
    # is on the path too, with hundreds of entries
    for entry in sorted(entry for entry in entries if entry.endswith(_METADATA_SUFFIXES)):
        # string methods, not a regular expression: compiling one was a visible part of every
        # start-up; ``name-version[-more].dist-info``, the version optional
        stem = entry.rpartition(".")[0]
        name, _, rest = stem.partition("-")
        if name:
            yield os.path.join(directory, entry), name, rest.partition("-")[0]


def _group_lines(text: str, group: str) -> Iterator[tuple[str, str]]:
    """The ``name = value`` pairs of section *group* of an ``entry_points.txt`` (an INI file)."""
    in_group = False
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line[0] in "#;":
            continue
        if line[0] == "[" and line[-1] == "]" and "]" not in line[1:-1] and line[1:-1].strip():
            in_group = line[1:-1].strip() == group
        elif in_group and "=" in line:
            name, _, value = line.partition("=")
            yield name.strip(), value.strip()


def _normalize(name: str) -> str:
    """PEP 503 name normalisation, so ``Foo_Bar`` and ``foo-bar`` are one distribution.

    String methods rather than ``re.sub(r"[-_.]+", "-", ...)``, whose compile every start paid.
    """
    return "-".join(filter(None, name.replace("_", "-").replace(".", "-").split("-"))).lower()


def _load_error(name: str, source: str, err: Exception) -> str:
    """One line naming the plugin, where it comes from and what went wrong."""
    if isinstance(err, SyntaxError):
        detail = f"SyntaxError: {err.msg} ({os.path.basename(err.filename or '?')}, line {err.lineno})"
    else:
        detail = f"{type(err).__name__}: {err}"
    origin = "built-in" if source == BUILTIN_SOURCE else f"from {source}"
    return f"format plugin '{name}' ({origin}) failed to load and is skipped: {' '.join(detail.split())}"
