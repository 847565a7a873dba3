"""The open VHDX image: header choice, log handling at open, the data path and block allocation.

Ordering rules (MS-VHDX §2.2.2, §2.3, §2.5):

* Before the first change after open, both headers get a new FileWriteGuid, and before the first
  change a reader could see, a new DataWriteGuid.
* New payload blocks are appended at the end of the file by growing it (the hole reads as zeros,
  so a partly written block's remainder is zero), the data is written and flushed, and only then
  are the BAT entries that make it visible written, through the log, in one transaction per request.
* Every FULLY_PRESENT entry is checked against the file size and the fixed regions before its
  offset is used, so no read or write goes outside the file or into the metadata.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from blockfmt.driver import BackingLink, Extent, FormatDriver, ImageInfo
from blockfmt.errors import (
    CorruptImageError,
    InvalidOptionError,
    LogReplayRequiredError,
    UnsupportedOperationError,
)
from blockfmt.fileio import ImageFile

from .bat import (
    KIND_DATA,
    KIND_PARENT,
    KIND_PARTIAL,
    KIND_ZERO,
    BatGeometry,
    BatTable,
    make_entry,
)
from .constants import (
    BAT_ENTRY_SIZE,
    BAT_OFFSET_MASK,
    BAT_STATE_MASK,
    FILE_ID_OFFSET,
    OBJECT_ALIGNMENT,
    BatState,
    MiB,
)
from .headers import HeaderPair, read_headers
from .metadata import DiskParameters, bat_region_entries, build_metadata, read_metadata
from .regions import FileRegions, check_log_fields, read_regions
from .structs import FileIdentifier

if TYPE_CHECKING:
    from .differencing import Differencing
    from .log import LogWriter

__all__ = ["VhdxDriver"]

_ENTRY = struct.Struct("<Q")
_ZEROS = bytes(MiB)
_FULLY_PRESENT = int(BatState.FULLY_PRESENT)
#: blocks whose state write_zeroes/discard change per log transaction: one transaction for a whole
#: 64 TiB range held a dict entry per block (888 MiB RSS to zero 4 TiB of 1 MiB blocks)
STATE_CHANGE_BATCH = 65_536


def _fill_zeros(view: memoryview) -> None:
    for pos in range(0, len(view), len(_ZEROS)):
        chunk = view[pos : pos + len(_ZEROS)]
        chunk[:] = _ZEROS[: len(chunk)]


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


class VhdxDriver(FormatDriver):
    """One open VHDX image. All I/O goes through :attr:`file` (which may be a log overlay).

    :ivar log_replayed_on_open: a read-write open replayed a log (check counts it as fixed).
    :ivar log_guid_without_entries: the header's LogGuid is set but the log holds no active
        sequence (MS-VHDX §2.3.3: invalid entries are ignored); ``check -r all`` clears the GUID,
        since readers that judge entries less strictly (QEMU) would otherwise still replay them.
    """

    def __init__(self, file: ImageFile, *, read_only: bool, options: Mapping[str, Any]) -> None:
        super().__init__(file, read_only=read_only)
        FileIdentifier.parse(file.pread(FileIdentifier.STRUCT.size, FILE_ID_OFFSET))
        self.headers: HeaderPair = read_headers(file)
        self._session_guid = uuid.uuid4()
        self._file_guid_written = False
        self._data_guid_written = False
        self.log_replayed_on_open = False
        self.log_guid_without_entries = False
        check_log_fields(self.headers.current, file.size(), writable=not read_only)
        if self.headers.current.has_log and self.headers.current.log_length:  # QEMU: no length, no log
            self._handle_log(options)
        self._log_writer: LogWriter | None = None
        self.reload_layout()
        #: BAT entries (block -> entry) in memory but not yet on disk; see stage_entries
        self._staged: dict[int, int] = {}

    # -- open -------------------------------------------------------------------------------

    def _handle_log(self, options: Mapping[str, Any]) -> None:
        """Replay (read-write), overlay (read-only, ``log_replay=memory``) or refuse (§2.3.3)."""
        from .log import LogOverlayFile, find_log_sequence, replay_log

        header = self.headers.current
        sequence = find_log_sequence(self.file, header.log_offset, header.log_length, header.log_guid)
        if sequence is None:
            self.log_guid_without_entries = True
            return
        if not self.read_only:
            replay_log(self.file, sequence)
            self.headers.update(self.file, file_write_guid=self._session_guid, log_guid=None)
            self._file_guid_written = True
            self.log_replayed_on_open = True
        elif options.get("log_replay") == "memory":
            self.file = LogOverlayFile(self.file, sequence)
        else:
            name = self.file.name
            raise LogReplayRequiredError(
                f"VHDX image file '{name}' opened read-only, but contains a log that needs to be replayed",
                hint=f"To replay the log, run:\nqemu-img check -r all '{name}'",
            )

    def clear_log_guid(self) -> None:
        """Mark the log empty (the nil LogGuid in both headers, flushed): it holds nothing to replay."""
        self.headers.update(self.file, file_write_guid=self._session_guid, log_guid=None)
        self._file_guid_written = True
        self.log_guid_without_entries = False

    def restore_region_tables(self) -> int:
        """Rewrite each damaged region table copy with the valid one (flushed); returns how many.

        Not through the log: the copies are each other's backup, so a torn rewrite leaves the
        valid copy in place (MS-VHDX §2.2.3).
        """
        damaged = self.regions.damaged_tables
        for offset in damaged:
            self.file.pwrite(self.regions.table_bytes, offset)
        if damaged:
            self.file.flush()
            self.regions = self.regions.replace(damaged_tables=())
        return len(damaged)

    def reload_layout(self) -> None:
        """Read the regions, the metadata and the BAT's place as a fresh open does (open, resize)."""
        self.file_size = self.file.size()
        self.regions: FileRegions = read_regions(self.file, self.headers.current, self.file_size)
        self.params: DiskParameters = read_metadata(
            self.file, self.regions.metadata.file_offset, self.regions.metadata.length
        )
        self.geometry: BatGeometry = self.params.geometry
        self.bat = self._open_bat()
        self.size = self.params.disk_size
        self.block_size = self.params.block_size
        self._alloc_end: int | None = None
        #: data blocks at or past this offset can overlap no fixed region (the read fast path)
        self._regions_end = max(span.end for span in self.regions.spans)
        #: the parent-aware data path of a differencing image (HasParent), None otherwise; made
        #: anew with the BAT, whose pages its sector bitmaps read (a resize replaces the BAT)
        self.differencing: Differencing | None = None
        if self.params.has_parent:
            from .differencing import Differencing  # only differencing images need it

            self.differencing = Differencing(self)

    def _open_bat(self) -> BatTable:
        """The BAT, read page by page on demand; the entries must fit its region and the file."""
        length = self.geometry.entry_count * BAT_ENTRY_SIZE
        region = self.regions.bat
        entries = bat_region_entries(self.params)
        if entries * BAT_ENTRY_SIZE > region.length:
            empty = (
                " (QEMU 7.2's count for an empty disk: Invalid argument)" if not self.params.disk_size else ""
            )
            raise CorruptImageError(
                f"VHDX BAT region ({region.length} bytes) is too small for {entries} entries{empty}"
            )
        if region.file_offset + length > self.file_size:
            raise CorruptImageError("VHDX BAT lies beyond the end of the file")
        return BatTable(self.geometry, self.file, region.file_offset)

    # -- block lookup -----------------------------------------------------------------------

    def data_offset(self, block: int) -> int:
        """File offset of FULLY_PRESENT block *block*, checked against the file and the regions.

        :raises CorruptImageError: with QEMU's text when it points after the end of the file.
        """
        offset = self.bat.file_offset(block)
        self.check_data_run(block, 1, offset)
        return offset

    def check_data_run(self, block: int, count: int, offset: int) -> None:
        """Check that blocks ``[block, block + count)``, stored one after the other from *offset*,
        lie inside the file and outside every fixed region.

        :raises CorruptImageError: naming the first bad block's entry, with QEMU's text when it
            points after the end of the file.
        """
        last = block + count - 1
        length = (count - 1) * self.block_size + self.geometry.block_length(last)
        end = offset + length
        if offset < self.file_size and end <= self.file_size:
            if (
                offset >= self._regions_end
                or self.regions.overlapping(offset, offset + count * self.block_size) is None
            ):
                return
        for nth in range(count):  # a bad run: find the first bad block and say what is wrong
            self._check_span(
                offset + nth * self.block_size,
                self.geometry.block_length(block + nth),
                self.block_size,
                f"VHDX BAT entry {self.geometry.payload_index(block + nth)}",
            )

    def check_block_offset(self, offset: int, what: str) -> None:
        """Check a 1 MiB sector bitmap block at *offset* as payload blocks are (*what* names its entry)."""
        self._check_span(offset, MiB, MiB, what)

    def _check_span(self, offset: int, length: int, footprint: int, what: str) -> None:
        end = offset + length
        if offset >= self.file_size:
            raise CorruptImageError(
                f"{what} start offset {offset} points after end of file "
                f"({self.file_size}). Image has probably been truncated."
            )
        if end > self.file_size:
            raise CorruptImageError(
                f"{what} end offset {end - 1} points after end of file "
                f"({self.file_size}). Image has probably been truncated."
            )
        span = self.regions.overlapping(offset, offset + footprint)
        if span is not None:
            raise CorruptImageError(f"{what} offset {offset} overlaps the {span.name}")

    def refresh_file_size(self) -> None:
        """Take the file's size anew: a check judges block offsets against the file as it is now."""
        self.file_size = self.file.size()

    def invalid_state_error(self, block: int, state: int | None = None) -> CorruptImageError:
        """The error for block *block*, whose entry has *state* (looked up when not given)."""
        index = self.geometry.payload_index(block)
        if state is None:
            state = self.bat.state(block)
        return CorruptImageError(f"VHDX BAT entry {index} has invalid state {state}")

    def data_runs(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """``(first_block, count, file_offset)`` of the data blocks ``[start, end)``, split where they
        stop lying one after the other in the file; each run is checked (:meth:`check_data_run`)."""
        for block, count, entry in self.bat.host_runs(start, end):
            offset = entry & BAT_OFFSET_MASK
            self.check_data_run(block, count, offset)
            yield block, count, offset

    def _segments(self, offset: int, length: int, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """Yield ``(virtual_offset, host_offset, length)`` for the data blocks ``[start, end)``
        clipped to the request, adjacent host ranges merged."""
        bs = self.block_size
        seg: list[int] | None = None
        for block, count, host in self.data_runs(start, end):
            lo = max(offset, block * bs)
            hi = min(offset + length, (block + count) * bs)
            host += lo - block * bs
            if seg is not None and seg[1] + seg[2] == host:
                seg[2] += hi - lo
                continue
            if seg is not None:
                yield seg[0], seg[1], seg[2]
            seg = [lo, host, hi - lo]
        if seg is not None:
            yield seg[0], seg[1], seg[2]

    def bat_runs(self, offset: int, length: int) -> Iterator[tuple[int, int, int]]:
        """Yield ``(kind, first_block, end_block)`` runs covering ``[offset, offset + length)``."""
        first = offset // self.block_size
        last = (offset + length - 1) // self.block_size
        yield from self.bat.runs(first, last + 1)

    # -- read -------------------------------------------------------------------------------

    def readinto(self, offset: int, buf: memoryview) -> None:
        bs, length = self.block_size, len(buf)
        block = offset // bs
        if (offset + length - 1) // bs == block:  # inside one block: the common small read, shortest path
            entry = self.bat.entry(block)
            host = entry & BAT_OFFSET_MASK
            if entry & BAT_STATE_MASK == _FULLY_PRESENT and self._regions_end <= host <= self.file_size - bs:
                got = self.file.preadinto(buf, host + offset - block * bs)
                if got < length:  # the file shrank under us: what is gone reads as zeros
                    _fill_zeros(buf[got:])
                return
        for kind, start, end in self.bat_runs(offset, length):
            if kind == KIND_ZERO:
                lo = max(offset, start * bs)
                hi = min(offset + length, end * bs)
                _fill_zeros(buf[lo - offset : hi - offset])
            elif kind == KIND_DATA:
                for virt, host, n in self._segments(offset, length, start, end):
                    self.read_host(buf[virt - offset : virt - offset + n], host)
            elif self.differencing is not None and kind in (KIND_PARENT, KIND_PARTIAL):
                self.differencing.read_runs(offset, buf, kind, start, end)
            else:
                raise self.invalid_state_error(start)

    def read_host(self, view: memoryview, host: int) -> None:
        """Fill *view* from file offset *host*; what lies past the end of the file (it shrank
        under us) reads as zeros."""
        got = self.file.preadinto(view, host)
        if got < len(view):
            _fill_zeros(view[got:])

    def write_host(self, data: memoryview, host: int) -> None:
        """Write payload bytes at file offset *host* (a block this driver allocated or checked)."""
        self.file.pwrite(data, host)

    def block_status(self, offset: int, length: int) -> Iterator[Extent]:
        """The real allocation: FULLY_PRESENT blocks are data at their host offset, others zeros."""
        bs = self.block_size
        for kind, start, end in self.bat_runs(offset, length):
            if kind == KIND_ZERO:
                lo = max(offset, start * bs)
                hi = min(offset + length, end * bs)
                yield Extent(lo, hi - lo, data=False, zero=True)
            elif kind == KIND_DATA:
                for virt, host, n in self._segments(offset, length, start, end):
                    yield Extent(virt, n, data=True, zero=False, host_offset=host)
            elif self.differencing is not None and kind in (KIND_PARENT, KIND_PARTIAL):
                yield from self.differencing.status_runs(offset, length, kind, start, end)
            else:
                raise self.invalid_state_error(start)

    # -- backing chain ----------------------------------------------------------------------

    def backing_link(self) -> BackingLink | None:
        if self.differencing is None:
            return None
        return self.differencing.backing_link(os.path.dirname(os.path.abspath(self.file.name)))

    def verify_parent(self, parent: FormatDriver) -> str | None:
        return None if self.differencing is None else self.differencing.verify_parent(parent)

    def child_defaults(self) -> dict[str, Any]:
        """A child shares the block and sector sizes; its blocks start NOT_PRESENT (read the parent)."""
        return {
            "block_size": self.block_size,
            "logical_sector_size": self.params.logical_sector_size,
            "physical_sector_size": self.params.physical_sector_size,
            "block_state_zero": False,
        }

    def link_parent(self, parent: FormatDriver, relative_name: str) -> None:
        """Write HasParent and a locator naming *parent*'s current DataWriteGuid, through the log.

        An image that is not yet differencing must hold no block at all (a new one), since its
        NOT_PRESENT blocks would start reading the parent's bytes.
        """
        headers = getattr(parent, "headers", None)
        parent_params: DiskParameters | None = getattr(parent, "params", None)
        if headers is None or parent_params is None:
            raise InvalidOptionError("the backing file of a VHDX image must be a VHDX image")
        if parent_params.disk_size != self.size:
            raise InvalidOptionError(
                f"a differencing VHDX must have its parent's virtual size ({parent_params.disk_size} bytes)"
            )
        if parent_params.logical_sector_size != self.params.logical_sector_size:
            raise InvalidOptionError(
                "a differencing VHDX must have its parent's logical sector size "
                f"({parent_params.logical_sector_size} bytes)"
            )
        if self.differencing is None and self.bat.any_entry():
            raise UnsupportedOperationError(
                f"'{self.file.name}' is not a differencing image and holds data; it cannot get a backing file"
            )
        from .parent_locator import build_locator

        locator = build_locator(headers.current.data_write_guid, relative_name)
        params = self.params.replace(parent_locator=locator)
        if params.geometry.entry_count * BAT_ENTRY_SIZE > self.regions.bat.length:
            raise UnsupportedOperationError("the VHDX BAT region has no room for the sector bitmap entries")
        metadata = build_metadata(params)
        if len(metadata) > self.regions.metadata.length:
            raise UnsupportedOperationError("the VHDX metadata region has no room for a parent locator")
        self.begin_change()
        self.commit_entries()
        self.log_writer().write_transaction([(self.regions.metadata.file_offset, metadata)])
        self.reload_layout()

    def info(self) -> ImageInfo:
        return ImageInfo(
            cluster_size=self.block_size,
            format_specific={
                "subformat": "fixed" if self.params.leave_blocks_allocated else "dynamic",
                "logical_sector_size": self.params.logical_sector_size,
                "physical_sector_size": self.params.physical_sector_size,
            },
        )

    # -- write ------------------------------------------------------------------------------

    def begin_change(self) -> None:
        """New FileWriteGuid and DataWriteGuid in both headers before the first visible change."""
        if self._data_guid_written:
            return
        self.headers.update(self.file, file_write_guid=self._session_guid, data_write_guid=uuid.uuid4())
        self._file_guid_written = self._data_guid_written = True

    def _set_log_guid(self, log_guid: uuid.UUID | None) -> None:
        """The log writer's callback: LogGuid into both headers, flushed (§2.3)."""
        self.headers.update(self.file, file_write_guid=self._session_guid, log_guid=log_guid)
        self._file_guid_written = True

    def log_writer(self) -> LogWriter:
        """The writer every metadata change of this image goes through (MS-VHDX §2.3)."""
        if self._log_writer is None:
            from .log import LogWriter

            header = self.headers.current
            self._log_writer = LogWriter(self.file, header.log_offset, header.log_length, self._set_log_guid)
        return self._log_writer

    def allocation_end(self) -> int:
        """Where the next block goes: past the file, every region, every data block and sector bitmap
        block, 1 MiB aligned. The BAT is streamed once, page by page, for the highest offset."""
        if self._alloc_end is None:
            end = max(self.file_size, self._regions_end)
            limit = _round_up(self.file_size, OBJECT_ALIGNMENT)
            offset = self.bat.highest_offset(limit)
            if offset:
                end = max(end, offset + self.block_size)
            self._alloc_end = _round_up(end, OBJECT_ALIGNMENT)
        return self._alloc_end

    def allocate(self, length: int) -> int:
        """Reserve *length* bytes (whole MiB) at the end of the file, grown over them; returns the offset."""
        cursor = self.allocation_end()
        self._alloc_end = cursor + _round_up(length, OBJECT_ALIGNMENT)
        if self._alloc_end > self.file_size:
            self.file.truncate(self._alloc_end)
            self.file_size = self._alloc_end
        return cursor

    def stage_entries(self, new_entries: dict[int, int]) -> None:
        """Put BAT entries into the in-memory BAT now and on disk at the next :meth:`commit_entries`.

        Until then nothing on disk refers to the newly written blocks, so a crash leaves the old
        contents (MS-VHDX §2.6: a block is visible only through its BAT entry). Batching the entries
        of many requests into one log transaction is what makes small allocating writes cheap.
        """
        for block, value in new_entries.items():
            self.bat.set_entry(block, value)
        self._staged.update(new_entries)

    def commit_entries(self, new_entries: dict[int, int] | None = None) -> bool:
        """Stage *new_entries*, then make every staged BAT entry durable in one log transaction.

        The log writer flushes before it writes its entry, so data written before this call is
        durable before any BAT entry points at it.

        :returns: whether anything was committed.
        """
        if new_entries:
            self.stage_entries(new_entries)
        by_index = {self.geometry.payload_index(block): value for block, value in self._staged.items()}
        bitmap_pages: list[tuple[int, bytes]] = []
        if self.differencing is not None:
            bitmaps = self.differencing.bitmaps
            by_index.update((self.geometry.bitmap_index(c), v) for c, v in bitmaps.staged_entries.items())
            bitmap_pages = bitmaps.pending_updates()
        if not by_index and not bitmap_pages:
            return False
        base = self.regions.bat.file_offset
        updates: list[tuple[int, bytes]] = []
        run_start = run_end = -1
        run = bytearray()
        for index in sorted(by_index):
            if index != run_end:
                if run:
                    updates.append((base + run_start * BAT_ENTRY_SIZE, bytes(run)))
                run, run_start = bytearray(), index
            run += _ENTRY.pack(by_index[index])
            run_end = index + 1
        if run:
            updates.append((base + run_start * BAT_ENTRY_SIZE, bytes(run)))
        self.log_writer().write_transaction(updates + bitmap_pages)
        self._staged.clear()
        self.bat.committed()
        if self.differencing is not None:
            self.differencing.bitmaps.committed()
        return True

    def write(self, offset: int, data: memoryview) -> None:
        bs = self.block_size
        block = offset // bs
        if (offset + len(data) - 1) // bs == block and self._data_guid_written and self.differencing is None:
            # inside one allocated block, the headers already changed: the common small write,
            # written in place with no BAT change (the read path's checks on the entry)
            entry = self.bat.entry(block)
            host = entry & BAT_OFFSET_MASK
            if entry & BAT_STATE_MASK == _FULLY_PRESENT and self._regions_end <= host <= self.file_size - bs:
                self.file.pwrite(data, host + offset - block * bs)
                return
        self.begin_change()
        if self.differencing is not None:
            self.differencing.write(offset, data)
        else:
            self.write_plain(offset, data)
        bitmap_pages = 0 if self.differencing is None else self.differencing.bitmaps.dirty_pages
        if self.bat.over_budget(bitmap_pages):  # bound the pages kept in memory for staged changes
            self.commit_entries()

    def write_plain(self, offset: int, data: memoryview) -> None:
        """Write into FULLY_PRESENT blocks in place and into zero-state blocks by allocating them."""
        bs, length = self.block_size, len(data)
        new_entries: dict[int, int] = {}
        segments: list[tuple[int, int, int]] = []
        for kind, start, end in self.bat_runs(offset, length):
            if kind == KIND_DATA:
                segments.extend(self._segments(offset, length, start, end))
            elif kind == KIND_ZERO:
                cursor = self.allocation_end()
                lo = max(offset, start * bs)
                hi = min(offset + length, end * bs)
                for block in range(start, end):
                    new_entries[block] = make_entry(BatState.FULLY_PRESENT, cursor + (block - start) * bs)
                segments.append((lo, cursor + lo - start * bs, hi - lo))
                self._alloc_end = cursor + (end - start) * bs
            else:
                raise self.invalid_state_error(start)
        if new_entries:
            assert self._alloc_end is not None
            if self._alloc_end > self.file_size:
                self.file.truncate(self._alloc_end)
                self.file_size = self._alloc_end
        for virt, host, n in segments:
            self.write_host(data[virt - offset : virt - offset + n], host)
        self.stage_entries(new_entries)

    def zero_in_place(self, offset: int, length: int) -> None:
        """Write zeros over the allocated parts of the range; unallocated parts already read as zero."""
        if length <= 0:
            return
        for kind, start, end in self.bat_runs(offset, length):
            if kind == KIND_DATA:
                for _virt, host, n in self._segments(offset, length, start, end):
                    for pos in range(0, n, len(_ZEROS)):
                        self.file.pwrite(_ZEROS[: min(len(_ZEROS), n - pos)], host + pos)
            elif kind != KIND_ZERO:
                raise self.invalid_state_error(start)

    def _set_whole_blocks(self, offset: int, length: int, state: BatState, only_data: bool) -> None:
        """Give every block wholly inside the range *state*; zero the partial ends in place when
        making zeros. Freed payload space is punched out of the file after the BAT is durable.
        Each :data:`STATE_CHANGE_BATCH` blocks are one transaction: a crash leaves every block old
        or new, as for any request over several blocks."""
        bs = self.block_size
        first, end = _round_up(offset, bs) // bs, (offset + length) // bs
        if offset + length == self.size:
            end = self.geometry.payload_blocks
        if first >= end:
            if state == BatState.ZERO:
                self.zero_in_place(offset, length)
            return
        if state == BatState.ZERO:
            self.zero_in_place(offset, first * bs - offset)
            tail = min(end * bs, self.size)
            self.zero_in_place(tail, offset + length - tail)
        for window in range(first, end, STATE_CHANGE_BATCH):  # bounded memory for any range
            new_entries: dict[int, int] = {}
            freed: list[tuple[int, int]] = []
            for kind, start, stop in self.bat.runs(window, min(end, window + STATE_CHANGE_BATCH)):
                if kind == KIND_DATA:
                    run = self._segments(start * bs, (stop - start) * bs, start, stop)
                    freed.extend((host, n) for _virt, host, n in run)
                elif only_data:
                    continue
                for block in range(start, stop):
                    if self.bat.state(block) != state:
                        new_entries[block] = make_entry(state)
            self.commit_entries(new_entries)
            for host, n in freed:
                self.file.punch_hole(host, n)

    def write_zeroes(self, offset: int, length: int, *, unmap: bool = False) -> None:
        """Whole blocks become ZERO (no allocation); fixed images are zeroed in place (§2.6.2.1).

        A differencing image gets zeros written: libvhdi reads a ZERO block of a child from the
        parent, so blockfmt never writes that state into one (it reads ZERO as zeros, as the spec
        and dissect.hypervisor do).
        """
        self.begin_change()
        if self.differencing is not None:
            FormatDriver.write_zeroes(self, offset, length)
        elif self.params.leave_blocks_allocated:
            self.zero_in_place(offset, length)
        else:
            self._set_whole_blocks(offset, length, BatState.ZERO, only_data=False)

    def discard(self, offset: int, length: int) -> None:
        """Allocated whole blocks become UNMAPPED and their space is punched; fixed images keep theirs,
        and so do differencing images (UNMAPPED would hide the parent's bytes)."""
        if self.params.leave_blocks_allocated or self.differencing is not None:
            return
        self.begin_change()
        self._set_whole_blocks(offset, length, BatState.UNMAPPED, only_data=True)

    def truncate(self, size: int) -> None:
        """Grow or shrink the disk in place, committed by one log transaction (see :mod:`.resize`)."""
        from .resize import resize

        resize(self, size)

    def flush(self) -> None:
        """Commit staged BAT entries (one log transaction, which flushes), or just flush the data."""
        if not self.commit_entries():
            self.file.flush()

    def close(self) -> None:
        if not self.read_only:
            self.commit_entries()
        if self._log_writer is not None:
            self._log_writer.close()
            self._log_writer = None
