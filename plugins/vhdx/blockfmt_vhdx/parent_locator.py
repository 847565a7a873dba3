"""The parent locator of a differencing VHDX (MS-VHDX §2.6.2.6): what it names, and where that is here.

The locator is a list of UTF-16 key/value pairs under the VHDX locator type GUID. ``parent_linkage``
(and ``parent_linkage2``, which Hyper-V writes while a merge is under way) hold the DataWriteGuid the
parent had when the child was made; ``relative_path``, ``volume_path`` and ``absolute_win32_path``
say where the parent is, in Windows spelling. This module turns those into paths on this host and
builds the locator of a new child. No I/O.
"""

from __future__ import annotations

import ntpath
import posixpath
import re
import uuid
from dataclasses import dataclass

from blockfmt.errors import CorruptImageError

from .constants import VHDX_PARENT_LOCATOR_TYPE
from .structs import ParentLocator

__all__ = ["ParentLink", "build_locator", "windows_path_candidates"]

KEY_LINKAGE = "parent_linkage"
KEY_LINKAGE2 = "parent_linkage2"
KEY_RELATIVE = "relative_path"
KEY_VOLUME = "volume_path"
KEY_ABSOLUTE = "absolute_win32_path"
#: the path keys, in the order a reader tries them (MS-VHDX §2.6.2.6.1)
PATH_KEYS = (KEY_RELATIVE, KEY_VOLUME, KEY_ABSOLUTE)
#: ``\\?\Volume{GUID}\`` or ``\\.\Volume{GUID}\`` prefixes of volume paths
_VOLUME_PREFIX = re.compile(r"^[\\/]{2}[?.][\\/]Volume\{[0-9A-Fa-f-]+\}[\\/]?")
#: ``\\?\`` long-path prefix in front of a drive path
_LONG_PREFIX = re.compile(r"^[\\/]{2}\?[\\/](?=[A-Za-z]:)")


def _guid(text: str, key: str) -> uuid.UUID:
    """A locator GUID value: ``{xxxxxxxx-...}`` with or without braces."""
    try:
        return uuid.UUID(text.strip().strip("{}"))
    except ValueError:
        raise CorruptImageError(f"VHDX parent locator {key} '{text}' is not a GUID") from None


def windows_path_candidates(path: str, child_dir: str) -> list[str]:
    """Where a Windows path the locator holds may be on this host, most likely first.

    A relative path is taken from the child's directory. An absolute path (drive letter, volume GUID,
    UNC share) cannot name a file here directly, so it is tried with its drive or volume removed
    (``C:\\VMs\\base.vhdx`` -> ``/VMs/base.vhdx``, as when a Windows volume is mounted at ``/``) and
    then as its file name in the child's directory (the usual case of a chain copied together).
    """
    if not path:
        return []
    path = _LONG_PREFIX.sub("", path)
    volume = _VOLUME_PREFIX.match(path)
    drive, rest = ntpath.splitdrive(path)
    if volume is None and not drive and not rest.startswith(("\\", "/")):
        return [posixpath.normpath(posixpath.join(child_dir, path.replace("\\", "/")))]
    rest = path[volume.end() :] if volume else rest
    rooted = posixpath.normpath("/" + rest.replace("\\", "/").lstrip("/"))
    return [rooted, posixpath.join(child_dir, posixpath.basename(rooted))]


@dataclass(frozen=True, slots=True)
class ParentLink:
    """The locator of one differencing VHDX, validated.

    :ivar linkages: DataWriteGuids a matching parent may have (``parent_linkage``, ``parent_linkage2``).
    :ivar paths: the path keys present, by key name, as stored.
    """

    linkages: tuple[uuid.UUID, ...]
    paths: dict[str, str]

    @classmethod
    def from_locator(cls, locator: ParentLocator) -> ParentLink:
        """:raises CorruptImageError: for a foreign locator type, no linkage, or no path."""
        if locator.locator_type != VHDX_PARENT_LOCATOR_TYPE:
            raise CorruptImageError(f"VHDX parent locator has an unknown type {locator.locator_type}")
        values = dict(locator.entries)
        if KEY_LINKAGE not in values:
            raise CorruptImageError("VHDX parent locator has no parent_linkage")
        linkages = tuple(_guid(values[key], key) for key in (KEY_LINKAGE, KEY_LINKAGE2) if key in values)
        paths = {key: values[key] for key in PATH_KEYS if values.get(key)}
        if not paths:
            raise CorruptImageError("VHDX parent locator names no parent path")
        return cls(linkages, paths)

    def candidates(self, child_dir: str) -> tuple[str, ...]:
        """Host paths to try for the parent, in the order of :data:`PATH_KEYS`, without repeats."""
        found: list[str] = []
        for key in PATH_KEYS:
            for candidate in windows_path_candidates(self.paths.get(key, ""), child_dir):
                if candidate not in found:
                    found.append(candidate)
        return tuple(found)

    @property
    def display_name(self) -> str:
        """The parent's name as ``info`` shows it: the relative path in ``/`` spelling, else as stored."""
        relative = self.paths.get(KEY_RELATIVE)
        if relative is not None:
            text = relative.replace("\\", "/")
            return text[2:] if text.startswith("./") else text
        return self.paths.get(KEY_ABSOLUTE) or self.paths[KEY_VOLUME]


def windows_relative(relative_name: str) -> str:
    """A relative POSIX path in Hyper-V's spelling: ``base.vhdx`` -> ``.\\base.vhdx``."""
    text = relative_name.replace("/", "\\")
    return text if text.startswith("..") else ".\\" + text


def build_locator(data_write_guid: uuid.UUID, relative_name: str) -> ParentLocator:
    """The locator of a new child: the parent's DataWriteGuid and its POSIX path relative to the child.

    Hyper-V writes the GUID in braces; only ``relative_path`` is written, as no volume or Windows
    path exists for a parent on this host.
    """
    return ParentLocator(
        VHDX_PARENT_LOCATOR_TYPE,
        ((KEY_LINKAGE, "{" + str(data_write_guid) + "}"), (KEY_RELATIVE, windows_relative(relative_name))),
    )
