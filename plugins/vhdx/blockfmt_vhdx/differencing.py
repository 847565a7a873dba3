"""The data path of a differencing VHDX: what is read from this file, what from the parent, and writes.

A payload block of a child is NOT_PRESENT (all of it from the parent), PARTIALLY_PRESENT (the
sector bitmap says which sectors are here), FULLY_PRESENT, or a zero state (zeros whatever the
parent holds). A write to a NOT_PRESENT block appends a new payload block, writes the data into it,
and stages the new BAT entry (PARTIALLY_PRESENT), the chunk's sector bitmap entry when the chunk had
none, and the bitmap bits; the driver commits all of them in one log transaction (MS-VHDX §2.3), so a
crash shows the block either as before or with the whole write. Requests are widened to whole
logical sectors first, the edges read through the chain, since the bitmap cannot say "half a sector".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from blockfmt.driver import BackingLink, Extent, FormatDriver

from .bat import KIND_DATA, KIND_PARENT, KIND_PARTIAL, KIND_ZERO, make_entry
from .constants import BatState
from .parent_locator import ParentLink
from .sector_bitmap import SectorBitmaps

if TYPE_CHECKING:
    from .image import VhdxDriver

__all__ = ["Differencing"]


def _fill_zeros(view: memoryview) -> None:
    view[:] = bytes(len(view))


class Differencing:
    """The parent-aware half of :class:`~blockfmt_vhdx.image.VhdxDriver` for HasParent images."""

    def __init__(self, driver: VhdxDriver) -> None:
        assert driver.params.parent_locator is not None
        self.driver = driver
        self.link = ParentLink.from_locator(driver.params.parent_locator)
        self.sector_size = driver.params.logical_sector_size
        self.bitmaps = SectorBitmaps(
            driver.bat,
            driver.block_size // self.sector_size,
            driver.read_host,
            driver.allocate,
            driver.check_block_offset,
        )

    # -- identity ---------------------------------------------------------------------------

    def backing_link(self, child_dir: str) -> BackingLink:
        return BackingLink(self.link.display_name, self.link.candidates(child_dir), "vhdx")

    def verify_parent(self, parent: FormatDriver) -> str | None:
        """The parent's current DataWriteGuid must be ``parent_linkage`` or ``parent_linkage2``."""
        headers = getattr(parent, "headers", None)
        if headers is None:
            return f"the parent '{parent.file.name}' of a differencing VHDX must be a VHDX image"
        guid = headers.current.data_write_guid
        if guid in self.link.linkages:
            return None
        wanted = ", ".join(f"{{{g}}}" for g in self.link.linkages)
        return (
            f"parent '{parent.file.name}' has DataWriteGuid {{{guid}}}, but '{self.driver.file.name}' "
            f"was made on {wanted} (the parent was modified or is another image)"
        )

    # -- reads ------------------------------------------------------------------------------

    def read_parent(self, offset: int, view: memoryview) -> None:
        backing = self.driver.backing
        if backing is None:
            _fill_zeros(view)
        else:
            backing.readinto(offset, view)

    def _sector_runs(self, block: int, lo: int, hi: int) -> Iterator[tuple[bool, int, int]]:
        """``(present, virtual_start, length)`` runs of ``[lo, hi)`` inside PARTIALLY_PRESENT *block*.

        ``lo`` and ``hi`` may cut sectors; each run is clipped back to them.
        """
        ss, base = self.sector_size, block * self.driver.block_size
        first = (lo - base) // ss
        last = -(-(hi - base) // ss)
        for present, sector, count in self.bitmaps.runs(block, first, last - first):
            start = max(lo, base + sector * ss)
            end = min(hi, base + (sector + count) * ss)
            yield present, start, end - start

    def read_runs(self, offset: int, buf: memoryview, kind: int, start: int, end: int) -> None:
        """Fill the part of *buf* (at *offset*) that blocks ``[start, end)`` of *kind* cover."""
        bs, length = self.driver.block_size, len(buf)
        lo_all, hi_all = max(offset, start * bs), min(offset + length, end * bs)
        if kind == KIND_PARENT:
            self.read_parent(lo_all, buf[lo_all - offset : hi_all - offset])
            return
        for block in range(start, end):
            lo, hi = max(lo_all, block * bs), min(hi_all, (block + 1) * bs)
            host = self.driver.data_offset(block) - block * bs
            for present, pos, n in self._sector_runs(block, lo, hi):
                view = buf[pos - offset : pos - offset + n]
                if present:
                    self.driver.read_host(view, host + pos)
                else:
                    self.read_parent(pos, view)

    def status_runs(self, offset: int, length: int, kind: int, start: int, end: int) -> Iterator[Extent]:
        """Extents of blocks ``[start, end)``; what the parent supplies is ``present=False``."""
        bs = self.driver.block_size
        lo_all, hi_all = max(offset, start * bs), min(offset + length, end * bs)
        if kind == KIND_PARENT:
            yield Extent(lo_all, hi_all - lo_all, data=False, zero=False, present=False)
            return
        for block in range(start, end):
            lo, hi = max(lo_all, block * bs), min(hi_all, (block + 1) * bs)
            host = self.driver.data_offset(block) - block * bs
            for present, pos, n in self._sector_runs(block, lo, hi):
                if present:
                    yield Extent(pos, n, data=True, zero=False, host_offset=host + pos)
                else:
                    yield Extent(pos, n, data=False, zero=False, present=False)

    # -- writes -----------------------------------------------------------------------------

    def write(self, offset: int, data: memoryview) -> None:
        """Write *data*, widened to whole logical sectors with the chain's bytes at the edges."""
        ss = self.sector_size
        lo = offset - offset % ss
        hi = -(-(offset + len(data)) // ss) * ss
        if lo != offset or hi != offset + len(data):
            widened = bytearray(hi - lo)
            self.driver.readinto(lo, memoryview(widened)[:ss])
            self.driver.readinto(hi - ss, memoryview(widened)[-ss:])
            widened[offset - lo : offset - lo + len(data)] = data
            offset, data = lo, memoryview(widened)
        bs = self.driver.block_size
        for kind, start, end in self.driver.bat_runs(offset, len(data)):
            lo, hi = max(offset, start * bs), min(offset + len(data), end * bs)
            piece = data[lo - offset : hi - offset]
            if kind in (KIND_DATA, KIND_ZERO):
                self.driver.write_plain(lo, piece)
            elif kind in (KIND_PARENT, KIND_PARTIAL):
                self._write_sectors(lo, piece, kind, start, end)
            else:
                raise self.driver.invalid_state_error(start)

    def _write_sectors(self, offset: int, data: memoryview, kind: int, start: int, end: int) -> None:
        """Sector-aligned write into NOT_PRESENT or PARTIALLY_PRESENT blocks; bits set, entries staged."""
        driver, bs, ss = self.driver, self.driver.block_size, self.sector_size
        new_entries: dict[int, int] = {}
        if kind == KIND_PARENT:
            cursor = driver.allocate((end - start) * bs)
            for block in range(start, end):
                new_entries[block] = make_entry(BatState.PARTIALLY_PRESENT, cursor + (block - start) * bs)
            driver.write_host(data, cursor + offset - start * bs)
            driver.stage_entries(new_entries)
        else:
            for block in range(start, end):
                lo, hi = max(offset, block * bs), min(offset + len(data), (block + 1) * bs)
                driver.write_host(
                    data[lo - offset : hi - offset], driver.data_offset(block) + lo - block * bs
                )
        for block in range(start, end):
            lo, hi = max(offset, block * bs), min(offset + len(data), (block + 1) * bs)
            self.bitmaps.mark_present(block, (lo - block * bs) // ss, (hi - lo) // ss)
