"""Differencing VDI images (VirtualBox snapshots): the UUID linkage and which blocks the parent supplies.

A differencing VDI (image type 4) stores no path to its parent; VirtualBox keeps that in the VM's
``.vbox`` file. The header names the parent by identity: ``uuidLinkage`` (QEMU's ``uuid_link``) is
the parent's image UUID (``uuidCreate``, QEMU's ``uuid_image``), and ``uuidParentModify``
(``uuid_parent``) the parent's modification UUID (``uuidModify``, ``uuid_last_snap``) when the child
was made. A parent is therefore searched by UUID in the child's directory and the one above it (a
VM keeps its base disk there and the snapshots in ``Snapshots/``).

In the block map, an unallocated entry (``VDI_IMAGE_BLOCK_FREE``) reads the parent's block, while a
discarded one (``VDI_IMAGE_BLOCK_ZERO``) reads zeros whatever the parent holds.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

from blockfmt.driver import BackingLink

from .bmap import BlockMap, Run
from .constants import BMAP_UNALLOCATED, FORMAT_NAME, ImageType
from .structs import Header

__all__ = ["backing_link", "fall_through", "linked_header", "mismatch"]


def backing_link(header: Header, filename: str) -> BackingLink:
    """Where to look for the parent: by UUID, in the child's directory and its parent directory."""
    child_dir = os.path.dirname(os.path.abspath(filename))
    dirs = tuple(dict.fromkeys((child_dir, os.path.dirname(child_dir))))
    return BackingLink(f"{{{header.uuid_link}}}", (), FORMAT_NAME, dirs)


def mismatch(child: Header, parent: Header, child_name: str, parent_name: str) -> str | None:
    """Why *parent* is not the parent of *child*, or None when the UUIDs link up."""
    if parent.uuid_image != child.uuid_link:
        return (
            f"'{parent_name}' has image UUID {parent.uuid_image}, "
            f"but '{child_name}' links to {child.uuid_link}"
        )
    if parent.uuid_last_snap != child.uuid_parent:
        return (
            f"'{parent_name}' has modification UUID {parent.uuid_last_snap}, but '{child_name}' was made on "
            f"{child.uuid_parent} (the parent was modified since)"
        )
    return None


def linked_header(header: Header, parent: Header) -> Header:
    """*header* as a differencing image of *parent* (type 4, link and parent-modification UUIDs)."""
    return dataclasses.replace(
        header,
        image_type=ImageType.DIFF,
        uuid_link=parent.uuid_image,
        uuid_parent=parent.uuid_last_snap,
    )


def fall_through(bmap: BlockMap, run: Run) -> Iterator[tuple[bool, int, int]]:
    """Split an unallocated-or-discarded *run* (at least one block) into ``(from_parent, first_block,
    count)`` stretches."""
    first, from_parent = run.first, bmap.get(run.first) == BMAP_UNALLOCATED
    for block in range(run.first + 1, run.first + run.count):
        unallocated = bmap.get(block) == BMAP_UNALLOCATED
        if unallocated != from_parent:
            yield from_parent, first, block - first
            first, from_parent = block, unallocated
    yield from_parent, first, run.first + run.count - first
