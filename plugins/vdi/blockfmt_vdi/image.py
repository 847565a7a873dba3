"""VdiDriver: reads and writes the virtual disk of one open VDI image.

Layout (VDICore.h, QEMU ``vdi.c``): a one-sector header, the block map at ``offset_bmap``, and the
data area at ``offset_data`` holding 1 MiB blocks in allocation order. A virtual block is stored at
``offset_data + entry * block_size`` where ``entry`` is its block map entry.

Data moves in runs: :meth:`BlockMap.runs` splits a request into stretches of blocks that are either
unallocated or stored back to back in the file, and each stretch is one ``preadv``/``pwritev``.
"""

from __future__ import annotations

import array
from collections.abc import Iterator

from blockfmt.driver import BackingLink, Extent, FormatDriver, ImageInfo
from blockfmt.errors import CorruptImageError, InvalidOptionError, UnsupportedOperationError
from blockfmt.fileio import ImageFile

from . import differencing
from .bmap import BlockMap, Run
from .constants import BMAP_DISCARDED, BMAP_ENTRY_SIZE, BMAP_UNALLOCATED, HEADER_STRUCT_SIZE, ImageType
from .structs import Header

__all__ = ["VdiDriver", "read_header"]


def read_header(file: ImageFile) -> Header:
    """Read and validate the header sector.

    A file shorter than a sector is padded with zeros, as QEMU's file layer does, so a truncated
    header fails with the same message QEMU gives (e.g. "sector size 0 is not 512").
    """
    return Header.parse(file.pread(HEADER_STRUCT_SIZE, 0))


class VdiDriver(FormatDriver):
    """One open VDI image (dynamic or static, header v1.1, 1 MiB blocks).

    :param file: the image file; owned by the host, never closed here.
    :raises CorruptImageError: for a bad signature or inconsistent sizes.
    :raises UnsupportedFeatureError: for what QEMU refuses too.

    A differencing image (VirtualBox snapshot) reads its unallocated blocks from :attr:`backing`.
    """

    def __init__(self, file: ImageFile, *, read_only: bool) -> None:
        super().__init__(file, read_only=read_only)
        self.header = read_header(file)
        self.size = self.header.virtual_size
        self.block_size = self.header.block_size
        self.bmap = BlockMap(file, self.header.offset_bmap, self.header.blocks_in_image)
        self.file_end = file.size()
        if not read_only:
            self._check_writable_layout()

    def _check_writable_layout(self) -> None:
        """Refuse to write where a map update could overwrite the header or block data.

        QEMU opens such images (iotest 084 pokes ``blocks_in_image`` past the end of the map and
        reads the result); reading them is harmless, writing them is not.
        """
        h = self.header
        bmap_end = h.offset_bmap + h.blocks_in_image * BMAP_ENTRY_SIZE
        if h.offset_bmap < HEADER_STRUCT_SIZE or bmap_end > h.offset_data:
            raise CorruptImageError(
                f"VDI block map [{h.offset_bmap:#x}, {bmap_end:#x}) overlaps the header or the data "
                f"area at {h.offset_data:#x}; refusing to open it for writing"
            )

    @property
    def is_differencing(self) -> bool:
        return self.header.image_type == ImageType.DIFF

    # -- backing chain --------------------------------------------------------

    def backing_link(self) -> BackingLink | None:
        return differencing.backing_link(self.header, self.file.name) if self.is_differencing else None

    def verify_parent(self, parent: FormatDriver) -> str | None:
        if not self.is_differencing:
            return None
        if not isinstance(parent, VdiDriver):
            return f"the parent '{parent.file.name}' of a differencing VDI must be a VDI image"
        return differencing.mismatch(self.header, parent.header, self.file.name, parent.file.name)

    def link_parent(self, parent: FormatDriver, relative_name: str) -> None:
        """Write type 4 and *parent*'s UUIDs into the header (a new image, or a child being rebased)."""
        if not isinstance(parent, VdiDriver):
            raise InvalidOptionError("the backing file of a VDI image must be a VDI image")
        if parent.size != self.size:
            raise InvalidOptionError(
                f"a differencing VDI must have its parent's virtual size ({parent.size} bytes)"
            )
        if not self.is_differencing and (self.header.blocks_allocated or self.header.is_static):
            raise UnsupportedOperationError(
                f"'{self.file.name}' is not a differencing image and holds data; it cannot get a backing file"
            )
        self.header = differencing.linked_header(self.header, parent.header)
        self.file.pwrite(self.header.pack(), 0)
        self.file.flush()

    def _read_parent(self, offset: int, view: memoryview) -> None:
        if self.backing is None:
            view[:] = bytes(len(view))
        else:
            self.backing.readinto(offset, view)

    def _unallocated_parts(self, run: Run, start: int, stop: int) -> Iterator[tuple[bool, int, int]]:
        """``(from_parent, lo, hi)`` pieces of ``[start, stop)`` in an unallocated *run*."""
        if not self.is_differencing:
            yield False, start, stop
            return
        bs = self.block_size
        for from_parent, first, count in differencing.fall_through(self.bmap, run):
            lo, hi = max(start, first * bs), min(stop, (first + count) * bs)
            if lo < hi:
                yield from_parent, lo, hi

    # -- geometry -------------------------------------------------------------

    def map_pages(self) -> Iterator[tuple[int, array.array[int]]]:
        """The block map as ``(first block, entries)`` pages, in order (for check's scan).

        :raises CorruptImageError: when the map is cut short by the end of the file.
        """
        return self.bmap.pages()

    def store_map_entries(self, first: int, entries: array.array[int]) -> None:
        """Write *entries* as the block map from virtual block *first* on (repair, a page at a time)."""
        self.bmap.set_range(first, entries)

    @property
    def zero_entry(self) -> int:
        """The entry of a block that reads as zeros without a data block: unallocated, or in a
        differencing image (where unallocated reads the parent) discarded."""
        return BMAP_DISCARDED if self.is_differencing else BMAP_UNALLOCATED

    def block_reads_zeros(self, entry: int) -> bool:
        """Whether the data block with map entry *entry* holds only zeros: file holes and the part
        past end of file are skipped without reading, the rest compared a read at a time."""
        host = self.host_offset(entry)
        for pos, length, is_data in self.file.data_runs(host, min(host + self.block_size, self.file_end)):
            if is_data and self.file.pread(length, pos).count(0) != length:
                return False
        return True

    def extend_file(self, end: int) -> None:
        """Grow the file to *end* bytes if it is shorter (repair: blocks the map names must exist)."""
        if end > self.file_end:
            self.file.truncate(end)
            self.file_end = end

    def host_offset(self, entry: int) -> int:
        """Where the block with map entry *entry* starts in the file."""
        return self.header.offset_data + entry * self.block_size

    def _runs(self, offset: int, length: int, *, repeats: bool = False) -> Iterator[tuple[Run, int, int]]:
        """Yield ``(run, start, stop)``: the runs of a request and the virtual bytes each one covers
        (*repeats*: see :meth:`BlockMap.runs`)."""
        first = offset // self.block_size
        last = (offset + length - 1) // self.block_size
        end = offset + length
        for run in self.bmap.runs(first, last - first + 1, repeats=repeats):
            start = max(offset, run.first * self.block_size)
            stop = min(end, (run.first + run.count) * self.block_size)
            yield run, start, stop

    def _run_host(self, run: Run, start: int) -> int:
        """File offset of virtual byte *start* inside the allocated *run*."""
        assert run.entry is not None
        return self.host_offset(run.entry) + start - run.first * self.block_size

    def _beyond_eof(self, run: Run, start: int) -> CorruptImageError:
        block = start // self.block_size
        return CorruptImageError(
            f"VDI block {block} (block map entry {run.entry}) lies beyond the end of the file"
        )

    # -- reads ----------------------------------------------------------------

    def readinto(self, offset: int, buf: memoryview) -> None:
        """Fill *buf*: one read per run of contiguous blocks; unallocated and discarded blocks read zeros.

        :raises CorruptImageError: when a needed block or map entry lies beyond the end of the file
            (QEMU would return zeros there; a truncated image is reported rather than papered over).
        """
        for run, start, stop in self._runs(offset, len(buf)):
            view = buf[start - offset : stop - offset]
            if run.entry is None:
                for from_parent, lo, hi in self._unallocated_parts(run, start, stop):
                    part = buf[lo - offset : hi - offset]
                    if from_parent:
                        self._read_parent(lo, part)
                    else:
                        part[:] = bytes(len(part))
                continue
            got = self.file.preadinto(view, self._run_host(run, start))
            if got < len(view):
                raise self._beyond_eof(run, start + got)

    # -- writes ---------------------------------------------------------------

    def next_free_entry(self) -> int:
        """Data-area index for the next new block: the first one past end of file.

        QEMU allocates at ``blocks_allocated``. A count below what the file holds (a crash left
        spare blocks, or the count is too low) could name a live block, so new blocks go after end
        of file and the count is raised past them (see :meth:`write`). A count beyond end of file
        means a damaged header or a truncated file: the map may hold entries past end of file that a
        new block would alias, so nothing is allocated until ``check -r all`` has recounted.

        :raises CorruptImageError: when ``blocks_allocated`` points past end of file.
        """
        stored = -(-max(0, self.file_end - self.header.offset_data) // self.block_size)
        count = self.header.blocks_allocated
        if count > stored:
            raise CorruptImageError(
                f"VDI header counts {count} allocated blocks but the file holds only {stored}; "
                "refusing to allocate a new block past the end of the file (run 'check -r all')"
            )
        return stored

    def write_allocated_count(self, count: int) -> None:
        """Store ``blocks_allocated`` in the header (the header is VDI's commit point for allocations)."""
        self.header = self.header.with_blocks_allocated(count)
        self.file.pwrite(self.header.pack(), 0)

    def write(self, offset: int, data: memoryview) -> None:
        """Write *data*, allocating blocks for runs that have none.

        Order, chosen for crash safety with every VDI reader: (1) all block data, new blocks appended
        at end of file with their zero padding; (2) the header's ``blocks_allocated``; (3) the new map
        entries, in one write. A crash before (3) leaves only unreferenced space. The count goes
        before the map because QEMU allocates at ``blocks_allocated``: a count that lagged behind
        the map would make QEMU's next allocation overwrite a live block. The new count is one past
        the last new block, so it also covers spare blocks the new ones were placed after.

        :raises CorruptImageError: when an allocated block lies beyond the end of the file or shares
            its data block with a neighbour (:meth:`_refuse_shared`), or a new block is needed and
            :meth:`next_free_entry` refuses; checked before anything is written.
        """
        runs = list(self._runs(offset, len(data), repeats=True))
        for run, start, stop in runs:
            if run.entry is not None:
                self._refuse_shared(run)
                if self._run_host(run, stop) > self.file_end:
                    raise self._beyond_eof(run, start)
        next_entry = 0
        if any(run.entry is None for run, _, _ in runs):
            next_entry = self.next_free_entry()
            if next_entry + len(data) // self.block_size + 2 > BMAP_DISCARDED:
                raise CorruptImageError("VDI data area is full: no block map entry is left for a new block")
        new_entries: dict[int, int] = {}
        for run, start, stop in runs:
            chunk = data[start - offset : stop - offset]
            if run.entry is not None:
                self.file.pwrite(chunk, self._run_host(run, start))
                continue
            first_block = start // self.block_size
            count = -(-stop // self.block_size) - first_block
            if self.is_differencing:
                start, chunk = self._copy_up(first_block, count, start, chunk)
            self._write_new_blocks(next_entry, first_block * self.block_size, count, start, chunk)
            for i in range(count):
                new_entries[first_block + i] = next_entry + i
            next_entry += count
        if new_entries:
            self.write_allocated_count(next_entry)
            lo, hi = min(new_entries), max(new_entries)
            values = [new_entries[i] if i in new_entries else self.bmap.get(i) for i in range(lo, hi + 1)]
            self.bmap.set_range(lo, values)

    def _refuse_shared(self, run: Run) -> None:
        """Refuse to change the data of an allocated *run* in place when another block names one of
        its data blocks too: a corrupt map, where one write would change the other block as well
        (QEMU writes it anyway); ``check -r all`` gives each its own copy or drops it. Only the run's
        own blocks and its two neighbours are looked at (one comparison each): a hostile map names
        one data block from millions of blocks in a row.

        :raises CorruptImageError: naming two blocks that share a data block.
        """
        assert run.entry is not None
        if run.repeated:
            partner = run.first + 1
        else:
            partner = next((b for b in (run.first - 1, run.first + run.count) if self._names(b, run)), -1)
        if partner >= 0:
            raise CorruptImageError(
                f"VDI blocks {min(run.first, partner)} and {max(run.first, partner)} name one data block; "
                "refusing to write it in place (run 'check -r all')"
            )

    def _names(self, block: int, run: Run) -> bool:
        """Whether *block* (maybe outside the map) names one of the data blocks of the allocated *run*."""
        assert run.entry is not None
        if not 0 <= block < self.bmap.count:
            return False
        try:
            return run.entry <= self.bmap.get(block) < run.entry + run.count
        except CorruptImageError:
            return False  # the map is cut short there: no block to protect

    def _copy_up(self, first_block: int, count: int, start: int, chunk: memoryview) -> tuple[int, memoryview]:
        """Complete a write into new blocks of a child with the chain's bytes, as VirtualBox does.

        Only a partly written first or last block needs them; the result covers whole blocks (the
        disk's end at most), so :meth:`_write_new_blocks` pads nothing with zeros.
        """
        bs = self.block_size
        lo, hi = first_block * bs, min((first_block + count) * bs, self.size)
        if start == lo and start + len(chunk) == hi:
            return start, chunk
        whole = bytearray(hi - lo)
        view = memoryview(whole)
        if start > lo:
            self.readinto(lo, view[: min(bs, hi - lo)])
        if start + len(chunk) < hi:
            tail = (first_block + count - 1) * bs
            self.readinto(tail, view[tail - lo :])
        whole[start - lo : start - lo + len(chunk)] = chunk
        return lo, view

    def _write_new_blocks(
        self, entry: int, block_start: int, count: int, start: int, chunk: memoryview
    ) -> None:
        """Store *count* new blocks at data-area index *entry*: *chunk* at virtual *start*, zeros around it.

        New blocks always lie at or past the end of the file (:meth:`_next_free_entry`; each run of a
        write starts where the previous one ended), so they need no padding: the file is extended
        over them and the hole reads as zeros; only the caller's bytes are written and the image
        stays sparse.
        """
        bs = self.block_size
        host = self.host_offset(entry)
        self.file.truncate(host + count * bs)
        self.file.pwrite(chunk, host + start - block_start)
        self.file_end = max(self.file_end, host + count * bs)

    def write_zeroes(self, offset: int, length: int, *, unmap: bool = False) -> None:
        """Zero a range without allocating: unallocated and discarded blocks already read as zeros,
        except the blocks a differencing image reads from its parent, which get zeros written.

        Allocated bytes are zeroed in place (a hole punched in the file); with *unmap*, whole
        allocated blocks of a dynamic image are discarded instead.
        """
        if unmap:
            self.discard(offset, length)
        runs = list(self._runs(offset, length, repeats=True))  # writes below change the map
        for run, _, _ in runs:
            if run.entry is not None:
                self._refuse_shared(run)
        for run, start, stop in runs:
            if run.entry is None:  # in a child, what the parent supplies gets zeros written
                for from_parent, lo, hi in list(self._unallocated_parts(run, start, stop)):
                    if from_parent:
                        FormatDriver.write_zeroes(self, lo, hi - lo)
            else:
                host = self._run_host(run, start)
                if host + stop - start > self.file_end:
                    raise self._beyond_eof(run, start)
                self.file.punch_hole(host, stop - start)

    def discard(self, offset: int, length: int) -> None:
        """Give back the whole blocks of a range: their entries become ``BMAP_DISCARDED`` (read as zeros).

        Partial blocks are left alone, as the format cannot free less than a block. A static image is
        preallocated by definition, so discard leaves it as it is (QEMU permits ignoring discards).
        """
        if self.header.is_static:
            return
        first = -(-offset // self.block_size)
        stop = (offset + length) // self.block_size
        if (offset + length) == self.size:
            stop = -(-self.size // self.block_size)  # the partial last block lies wholly inside the disk
        if stop <= first:
            return
        freed = {
            run.first + i: run.entry + i
            for run in self.bmap.runs(first, stop - first)
            if run.entry is not None
            for i in range(run.count)
        }
        if freed:
            self._free_blocks(freed)

    def _free_blocks(self, freed: dict[int, int]) -> None:
        """Mark blocks discarded and keep the data area dense, as VirtualBox does.

        The blocks stored last in the file move into the freed slots (:meth:`compact`), so every
        entry stays below ``blocks_allocated`` (qemu-img check requires entries below
        ``blocks_in_image``, and QEMU allocates at ``blocks_allocated``). The discarded entries are
        written (and flushed) before any freed slot is reused.
        """
        old_count = self.header.blocks_allocated
        new_count = old_count - len(freed)
        dense = new_count >= 0 and self.file_end == self.host_offset(old_count)
        if not dense or not all(e < old_count for e in freed.values()):
            # Not the layout QEMU and VirtualBox keep (a crash left spare blocks, or the count is
            # off): lowering the count could let QEMU allocate over a live block, so free the
            # space in place instead; the blocks stay mapped and read as zeros.
            for entry in freed.values():
                self.file.punch_hole(self.host_offset(entry), self.block_size)
            return
        for lo, hi in _ranges(sorted(freed)):
            self.bmap.set_range(lo, [BMAP_DISCARDED] * (hi - lo + 1))
        holes = sorted(e for e in freed.values() if e < new_count)
        movers = sorted(set(range(new_count, old_count)) - set(freed.values()))
        owners = self.bmap.owners(movers)
        moves = [
            (virtual, entry, hole)
            for entry, hole in zip(movers, holes, strict=True)
            for virtual in owners.get(entry, ())
        ]
        if moves:
            self.file.flush()
        self.compact(moves, new_count)

    def compact(self, moves: list[tuple[int, int, int]], count: int) -> None:
        """Move blocks into free slots, then make *count* the allocated count and cut the file after it.

        *moves* are ``(virtual block, from entry, to entry)``. The caller guarantees that every
        destination is referenced by no entry and that after the moves no entry is at or above
        *count*, so what lies past the new end of the data area is unreferenced. Crash order: the
        copies, flush (their slots are referenced by nothing yet); the map entries, flush (old and
        new copy are equal, either entry reads right); the count (the old slots are free now, and
        QEMU may allocate there); the file is cut last.
        """
        for _, source, target in moves:
            block = self.file.pread_exact(self.block_size, self.host_offset(source), "VDI block")
            self.file.pwrite(block, self.host_offset(target))
            # a copy for a shared block may be the first to use a slot past end of file
            self.file_end = max(self.file_end, self.host_offset(target) + self.block_size)
        if moves:
            self.file.flush()
            for virtual, _, target in moves:
                self.bmap.set_range(virtual, [target])
            self.file.flush()
        self.write_allocated_count(count)
        end = self.host_offset(count)
        if self.file_end > end:
            self.file.truncate(end)
            self.file_end = end

    # -- status and info -------------------------------------------------------

    def block_status(self, offset: int, length: int) -> Iterator[Extent]:
        """Allocation status as QEMU's ``vdi_co_block_status`` gives it, whole runs at a time.

        Allocated blocks are data at their file offset; unallocated and discarded ones read as
        zeros. For static images QEMU also asks the file (``BDRV_BLOCK_RECURSE``), so holes in the
        preallocated area are reported as zero data, which is done here with ``SEEK_HOLE``.

        Blocks of a corrupt map that all name one data block are one data extent without a host
        offset (their data is not one range of the file), where QEMU reports each block at that
        offset: mapping a map of millions of such entries costs a comparison per map page.
        """
        for run, start, stop in self._runs(offset, length, repeats=True):
            if run.entry is None:
                for from_parent, lo, hi in self._unallocated_parts(run, start, stop):
                    yield Extent(lo, hi - lo, data=False, zero=not from_parent, present=not from_parent)
            elif run.repeated:
                yield Extent(start, stop - start, data=True, zero=False)
            elif self.header.is_static:
                yield from self._file_extents(start, stop - start, self._run_host(run, start))
            else:
                host = self._run_host(run, start)
                yield Extent(start, stop - start, data=True, zero=False, host_offset=host)

    def _file_extents(self, start: int, length: int, host: int) -> Iterator[Extent]:
        """Split data at *host* into file data and file holes (zero data)."""
        for pos, count, is_data in self.file.data_runs(host, host + length):
            yield Extent(start + pos - host, count, data=True, zero=not is_data, host_offset=pos)

    def info(self) -> ImageInfo:
        return ImageInfo(cluster_size=self.block_size)

    def truncate(self, size: int) -> None:
        """Grow or shrink the disk in place, crash-safe (see :mod:`.resize`)."""
        from .resize import resize

        resize(self, size)


def _ranges(values: list[int]) -> Iterator[tuple[int, int]]:
    """Group sorted integers into inclusive ``(lo, hi)`` runs of consecutive values."""
    lo = prev = values[0]
    for value in values[1:]:
        if value != prev + 1:
            yield lo, prev
            lo = value
        prev = value
    yield lo, prev
