"""The two independent readers of differencing images, driven the way each one works.

libvhdi (``pyvhdi``) is given the chain explicitly with ``set_parent``. dissect.hypervisor's VHDX
reader finds parents itself from the locator; its VDI reader is given the parent stream, and is read
one 1 MiB block per call because its ``VDIStream._read`` takes a multi-block request from the first
block's location (``read_len = min(length, max(length, ...))``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyvhdi
from dissect.hypervisor.disk.vdi import VDI
from dissect.hypervisor.disk.vhdx import VHDX

MiB = 1 << 20


def read_libvhdi(paths: Sequence[Path], size: int, offset: int = 0) -> bytes:
    """Read *size* bytes at *offset* of the top of a VHDX chain (*paths* base first) with libvhdi."""
    files: list[Any] = []
    try:
        for path in paths:
            handle = pyvhdi.file()
            handle.open(str(path))
            if files:
                handle.set_parent(files[-1])
            files.append(handle)
        return files[-1].read_buffer_at_offset(size, offset)
    finally:
        for handle in reversed(files):
            handle.close()


def read_dissect_vhdx(top: Path, size: int, offset: int = 0) -> bytes:
    """Read a VHDX chain with dissect, which opens the parents from the locator itself."""
    disk = VHDX(top)
    try:
        disk.seek(offset)
        return disk.read(size)
    finally:
        layer: Any = disk
        while layer is not None:  # dissect closes none of the files it opened
            layer.fh.close()
            layer = layer.parent


def read_dissect_vdi(paths: Sequence[Path], size: int) -> bytes:
    """Read the top of a VDI chain (*paths* base first), one block per call (see module doc)."""
    disks: list[VDI] = []
    try:
        stream: Any = None
        for path in paths:
            disk = VDI(path, parent=stream)
            disks.append(disk)
            stream = disk.open()
        chunks = []
        for offset in range(0, size, MiB):
            stream.seek(offset)
            chunks.append(stream.read(min(MiB, size - offset)))
        return b"".join(chunks)
    finally:
        for disk in disks:
            disk.close()
