"""Structure-aware fuzzing of format plugins with invariants, in memory-bounded worker processes.

A plugin author describes where a valid image keeps its structures (a :class:`Layout` of
:class:`HotRegion` and :class:`ChecksumSpan`); :func:`mutate` damages those places the way hostile
or broken writers do (bit flips, boundary integers, pointers into other structures, copies of one
structure over another, truncation, growth) and optionally recomputes checksum fields, by the
format's own rule (its plugin's ``blockfmt_stamp_checksum``), so the damage gets past checksum
checks into the logic behind them. :func:`check_invariants` then drives the
public surface over an in-memory :class:`RecordingFile` and asserts the rules every plugin must keep
(``common.md``):

* only :class:`~blockfmt.errors.BlockFormatError` subclasses escape (no ``struct.error``,
  ``IndexError``, ``MemoryError``, ...), and nothing hangs (:attr:`Limits.seconds_per_case`);
* no allocation driven by a hostile length (the worker runs under ``RLIMIT_AS``);
* no I/O outside the file's legitimate range: negative offsets, single I/Os over
  :attr:`Limits.max_io`, writes or growth beyond :attr:`Limits.growth`, any write by a read-only
  open;
* repair (``check -r all``) never turns a readable image into an unreadable one, never changes
  guest data unless it reports a fixed corruption, and leaves an image a second check finds clean
  when it reports everything fixed;
* a guest write reads back and leaves the rest of the disk as it was.

:func:`run_campaign` runs cases in forked workers (each rebuilds its case from a seed number, so
only integers cross the pipe) and returns the count, crash-free rate, slowest case and every
failure with the input that caused it.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import multiprocessing.connection
import os
import random
import resource
import signal
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..driver import CheckResult, RepairMode
from ..errors import BlockFormatError, BlockIOError, UnsupportedOperationError
from ..fileio import ImageFile
from ..host import PROBE_SIZE, FormatHooks, Host, default_host
from ..image import Image

__all__ = [
    "UNMUTATED",
    "CampaignSummary",
    "CaseOutcome",
    "ChecksumSpan",
    "FuzzCase",
    "HotRegion",
    "Layout",
    "Limits",
    "RecordingFile",
    "Seed",
    "SparseBytes",
    "bound_this_process",
    "check_invariants",
    "fix_checksums_of",
    "make_case",
    "mutate",
    "run_campaign",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
#: granularity of :class:`SparseBytes`; all-zero chunks are not stored
CHUNK_SIZE = 64 * KiB


# -- an in-memory, copy-on-write, sparse image file ------------------------------------------------


class SparseBytes:
    """A growable byte string kept as :data:`CHUNK_SIZE` pieces; absent pieces read as zeros.

    :meth:`copy` is cheap (pieces are shared until written), so a 256 MiB mostly-empty sample image
    costs a dictionary copy per case instead of a 256 MiB copy.
    """

    def __init__(self, size: int = 0) -> None:
        self.size = size
        self._chunks: dict[int, bytes | bytearray] = {}
        self._owned: set[int] = set()

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> SparseBytes:
        view = memoryview(data).cast("B")
        store = cls(len(view))
        zero = bytes(CHUNK_SIZE)
        for index, start in enumerate(range(0, len(view), CHUNK_SIZE)):
            piece = bytes(view[start : start + CHUNK_SIZE])
            if piece != zero[: len(piece)]:
                store._chunks[index] = piece.ljust(CHUNK_SIZE, b"\0")
        return store

    def copy(self) -> SparseBytes:
        """An independent copy; both sides copy a piece before their next write to it."""
        other = SparseBytes(self.size)
        other._chunks = dict(self._chunks)
        self._owned.clear()
        return other

    def read_into(self, view: memoryview, offset: int) -> int:
        """Fill *view* from *offset*; returns the bytes that lie inside :attr:`size` (the rest untouched)."""
        end = min(offset + len(view), self.size)
        pos = offset
        while pos < end:
            index, within = divmod(pos, CHUNK_SIZE)
            n = min(CHUNK_SIZE - within, end - pos)
            chunk = self._chunks.get(index)
            dest = view[pos - offset : pos - offset + n]
            if chunk is None:
                dest[:] = bytes(n)
            else:
                dest[:] = chunk[within : within + n]
            pos += n
        return max(0, end - offset)

    def read(self, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        self.read_into(memoryview(buf), offset)
        return bytes(buf)

    def write(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        view = memoryview(data).cast("B")
        pos = offset
        end = offset + len(view)
        while pos < end:
            index, within = divmod(pos, CHUNK_SIZE)
            n = min(CHUNK_SIZE - within, end - pos)
            self._owned_chunk(index)[within : within + n] = view[pos - offset : pos - offset + n]
            pos += n
        self.size = max(self.size, end)

    def truncate(self, size: int) -> None:
        if size < self.size:
            last = size // CHUNK_SIZE
            for index in [i for i in self._chunks if i > last]:
                del self._chunks[index]
                self._owned.discard(index)
            within = size % CHUNK_SIZE
            if last in self._chunks:
                self._owned_chunk(last)[within:] = bytes(CHUNK_SIZE - within)
        self.size = size

    def to_bytes(self) -> bytes:
        return self.read(0, self.size)

    def chunks(self) -> Iterator[tuple[int, bytes]]:
        """``(offset, bytes)`` of every stored piece inside :attr:`size` that is not all zeros, in order."""
        for index in sorted(self._chunks):
            start = index * CHUNK_SIZE
            if start >= self.size:
                continue
            piece = bytes(self._chunks[index][: min(CHUNK_SIZE, self.size - start)])
            if piece.count(0) != len(piece):
                yield start, piece

    def digest(self) -> str:
        """SHA-256 of the size and the non-zero pieces: equal contents, equal digests.

        Absent pieces are left out rather than hashed as zeros, so the cost follows the stored
        data, not the file size (a fuzz case may describe a sparse file of a terabyte).
        """
        sha = hashlib.sha256(self.size.to_bytes(8, "little"))
        for start, piece in self.chunks():
            sha.update(start.to_bytes(8, "little"))
            sha.update(piece)
        return sha.hexdigest()

    def _owned_chunk(self, index: int) -> bytearray:
        chunk = self._chunks.get(index)
        if index not in self._owned or not isinstance(chunk, bytearray):
            chunk = bytearray(chunk) if chunk is not None else bytearray(CHUNK_SIZE)
            self._chunks[index] = chunk
            self._owned.add(index)
        return chunk


class FileBoundsViolation(BlockIOError):
    """Raised into the plugin when it does I/O outside the legitimate range (also recorded)."""


class RecordingFile(ImageFile):
    """An :class:`ImageFile` over :class:`SparseBytes` that refuses and records illegitimate I/O.

    :param growth: how far past its size at construction the file may be written or extended.
    :param max_io: the largest single read or write allowed (a bigger one means a hostile length).
    """

    def __init__(self, store: SparseBytes, name: str, *, read_only: bool, growth: int, max_io: int) -> None:
        self.name = name
        self.read_only = read_only
        self.store = store
        self.limit = store.size + growth
        self.max_io = max_io
        self.violations: list[str] = []
        self.writes = 0

    def _refuse(self, what: str) -> None:
        self.violations.append(what)
        raise FileBoundsViolation(what)

    def _check(self, op: str, offset: int, length: int) -> None:
        if offset < 0 or length < 0:
            self._refuse(f"{op} at negative offset {offset} length {length}")
        if length > self.max_io:
            self._refuse(f"{op} of {length} bytes at {offset} exceeds the {self.max_io}-byte bound")

    def preadinto(self, buf: memoryview | bytearray, offset: int) -> int:
        view = memoryview(buf).cast("B")
        self._check("read", offset, len(view))
        return self.store.read_into(view, offset)

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        view = memoryview(data).cast("B")
        self._check("write", offset, len(view))
        if self.read_only:
            self._refuse(f"write of {len(view)} bytes at {offset} by a read-only open")
        if offset + len(view) > self.limit:
            self._refuse(f"write at {offset} length {len(view)} beyond the file bound {self.limit}")
        self.writes += 1
        self.store.write(view, offset)

    def size(self) -> int:
        return self.store.size

    def truncate(self, length: int) -> None:
        if self.read_only:
            self._refuse(f"truncate to {length} by a read-only open")
        if length < 0 or length > self.limit:
            self._refuse(f"truncate to {length} outside [0, {self.limit}]")
        self.writes += 1
        self.store.truncate(length)

    def flush(self) -> None:
        if self.read_only:
            self._refuse("flush by a read-only open")

    def punch_hole(self, offset: int, length: int) -> None:
        self._check("punch", offset, 0)
        super().punch_hole(offset, length)


# -- layout descriptions and the mutator ---------------------------------------------------------


@dataclass(frozen=True)
class HotRegion:
    """A byte range holding structure the parser trusts (header, table, map), named for reports.

    :ivar int_fields: offsets (within the region) of integer fields worth hitting with boundary
        values, as ``(offset, width)``; empty means "any aligned offset".
    """

    name: str
    offset: int
    length: int
    int_fields: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class ChecksumSpan:
    """A checksum over ``[offset, offset + length)`` stored at *field*; how it is computed is the
    format's rule (``blockfmt_stamp_checksum``)."""

    offset: int
    length: int
    field: int


@dataclass(frozen=True)
class Layout:
    """Where a seed image keeps its structures; built by a format-specific function of the bytes."""

    regions: tuple[HotRegion, ...]
    checksums: tuple[ChecksumSpan, ...] = ()


@dataclass(frozen=True)
class Seed:
    """A valid image of *format* to mutate, with its layout."""

    name: str
    format: str
    store: SparseBytes
    layout: Layout


@dataclass(frozen=True)
class FuzzCase:
    """One mutated image: the seed's index and the random seed that rebuild it deterministically."""

    seed_index: int
    case_seed: int
    format: str
    store: SparseBytes
    mutations: tuple[str, ...]


_WIDTHS = (1, 2, 4, 8)


def _interesting_values(file_size: int, layout: Layout) -> list[int]:
    values = [0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0x1FF, 0x200, 0xFFF, 0x1000, 0x7FFF, 0x8000, 0xFFFF]
    values += [MiB - 1, MiB, MiB + 1, 1 << 31, (1 << 31) - 1, (1 << 32) - 1, 1 << 32, (1 << 63) - 1]
    values += [1 << 63, (1 << 64) - 1, file_size - 1, file_size, file_size + 1, file_size * 2]
    values += [r.offset for r in layout.regions] + [r.offset + r.length for r in layout.regions]
    values += [r.length for r in layout.regions]
    return [v for v in values if v >= 0]


def mutate(
    seed: Seed,
    rng: random.Random,
    *,
    max_ops: int = 3,
    fix_checksums: float = 0.75,
    host: Host | None = None,
) -> tuple[SparseBytes, tuple[str, ...]]:
    """Damage a copy of *seed* with 1..*max_ops* structure-aware mutations; see the module doc.

    :param host: whose plugin for the seed's format stamps checksums (default: the default host).
    :returns: the damaged copy and one line per mutation.
    """
    store = seed.store.copy()
    regions = seed.layout.regions
    values = _interesting_values(store.size, seed.layout)
    done: list[str] = []
    for _ in range(rng.randint(1, max_ops)):
        region = rng.choice(regions)
        kind = rng.choices(
            ("bitflip", "int", "bytes", "copy", "zero", "truncate", "extend"), (5, 6, 3, 1, 1, 1, 1)
        )[0]
        if kind == "bitflip":
            pos = region.offset + rng.randrange(region.length)
            byte = store.read(pos, 1)[0] ^ (1 << rng.randrange(8))
            store.write(bytes([byte]), pos)
            done.append(f"bitflip {region.name}+{pos - region.offset}")
        elif kind == "int":
            if region.int_fields and rng.random() < 0.8:
                rel, width = rng.choice(region.int_fields)
            else:
                width = rng.choice(_WIDTHS)
                rel = rng.randrange(max(1, region.length // width)) * width
            value = rng.choice(values) + rng.choice((0, 0, 0, -1, 1))
            value %= 1 << (8 * width)
            store.write(value.to_bytes(width, "little"), region.offset + rel)
            done.append(f"int{width * 8} {region.name}+{rel}={value:#x}")
        elif kind == "bytes":
            rel = rng.randrange(region.length)
            count = min(rng.randint(1, 16), region.length - rel)
            store.write(rng.randbytes(count), region.offset + rel)
            done.append(f"bytes {region.name}+{rel}x{count}")
        elif kind == "copy":
            source = rng.choice(regions)
            count = min(source.length, region.length)
            store.write(store.read(source.offset, count), region.offset)
            done.append(f"copy {source.name} over {region.name} ({count} bytes)")
        elif kind == "zero":
            rel = rng.randrange(region.length)
            count = min(rng.choice((8, 64, 512, 4096, region.length)), region.length - rel)
            store.write(bytes(count), region.offset + rel)
            done.append(f"zero {region.name}+{rel}x{count}")
        elif kind == "truncate":
            cut = rng.choice(
                [region.offset, region.offset + region.length // 2, rng.randrange(store.size + 1)]
            )
            store.truncate(cut)
            done.append(f"truncate {cut} (in {region.name})")
        else:
            grow = rng.choice((1, 511, 4096, MiB))
            store.truncate(store.size + grow)
            done.append(f"extend +{grow}")
    if seed.layout.checksums and rng.random() < fix_checksums:
        fix_checksums_of(store, seed.layout, (host or default_host()).hooks(seed.format))
        done.append("checksums fixed")
    return store, tuple(done)


def fix_checksums_of(store: SparseBytes, layout: Layout, hooks: FormatHooks) -> None:
    """Recompute every checksum *layout* names that lies inside *store*, by the format's rule."""
    for span in layout.checksums:
        if span.offset + span.length > store.size:
            continue
        structure = bytearray(store.read(span.offset, span.length))
        hooks.stamp_checksum(structure, span.field - span.offset)
        store.write(structure, span.offset)


#: the ``case_seed`` that stands for the seed itself, unmutated (a seed must pass every invariant)
UNMUTATED = -1


def make_case(
    seeds: Sequence[Seed], seed_index: int, case_seed: int, *, host: Host | None = None
) -> FuzzCase:
    """Rebuild case *case_seed* of seed *seed_index* (deterministic: the same numbers, the same bytes).

    :param host: see :func:`mutate`.
    """
    seed = seeds[seed_index]
    if case_seed == UNMUTATED:
        return FuzzCase(seed_index, case_seed, seed.format, seed.store.copy(), ())
    store, mutations = mutate(seed, random.Random(case_seed), host=host)
    return FuzzCase(seed_index, case_seed, seed.format, store, mutations)


# -- invariants ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Per-case bounds. ``memory`` is address space on top of what the worker had when it started."""

    seconds_per_case: float = 10.0
    memory: int = 768 * MiB
    #: how far past the original end a write may land: a VDI header may put its data area anywhere in
    #: the first 4 GiB (``offset_data`` is a u32) and a VHDX block is up to 256 MiB (MS-VHDX §2.6.2.1);
    #: anything further is a hostile offset (the store is sparse, so legal growth costs no memory)
    growth: int = 8 * GiB
    max_io: int = 300 * MiB
    #: guest bytes read per pass (every allocated range, up to this much)
    read_budget: int = 32 * MiB
    #: bytes per read request when reading a guest range
    read_chunk: int = 4 * MiB


@dataclass
class CaseOutcome:
    """``ok``: opened and kept every invariant; ``rejected``: refused with a BlockFormatError at *stage*."""

    status: str
    stage: str
    detail: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == "failure"


class InvariantBroken(Exception):
    """A rule of the module doc was broken (never raised by blockfmt itself)."""


class CaseTimeout(BaseException):
    """The per-case time bound expired (BaseException so plugin ``except Exception`` cannot hide it)."""


@contextlib.contextmanager
def _opened(host: Host, fmt: str, store: SparseBytes, limits: Limits, *, read_only: bool) -> Iterator[Image]:
    """Open *store* as *fmt*; on the way out close it and turn recorded bound violations into a failure.

    The check runs even when the plugin swallowed the :class:`FileBoundsViolation` it got.
    """
    file = RecordingFile(
        store, "fuzz." + fmt, read_only=read_only, growth=limits.growth, max_io=limits.max_io
    )
    try:
        hooks = host.hooks(fmt)
        image = Image(hooks, fmt, file, hooks.open(file, read_only, {}), read_only=read_only)
        try:
            yield image
        finally:
            image.close()
    finally:
        if file.violations:
            raise InvariantBroken("illegitimate file I/O: " + "; ".join(file.violations[:3]))


GuestView = tuple[list[tuple[int, int, bool, bool]], str]


def _snapshot(image: Image, limits: Limits) -> GuestView:
    """Map the whole disk and hash every allocated byte (up to the read budget): the guest's view."""
    extents = image.map()
    sha = hashlib.sha256()
    budget = limits.read_budget
    for ext in extents:
        if not ext.data or budget <= 0:
            continue
        pos, end = ext.offset, ext.offset + min(ext.length, budget)
        budget -= end - pos
        while pos < end:
            n = min(limits.read_chunk, end - pos)
            sha.update(pos.to_bytes(8, "little"))
            sha.update(image.read_at(pos, n))
            pos += n
    if image.size:
        sha.update(image.read_at(image.size - 1, 1))
    return [(e.offset, e.length, e.data, e.zero) for e in extents], sha.hexdigest()


class _Stage:
    """Records which step of a case is running, for the report."""

    name = "probe"


def check_invariants(case: FuzzCase, *, host: Host | None = None, limits: Limits = Limits()) -> CaseOutcome:
    """Run every step on *case* and return its outcome; a broken rule is a ``failure`` with a traceback.

    Steps: probe; read-only open, map, read, info, check (no write may happen); read-write open and
    ``check -r all``; read-only reopen compared with the first view; a guest write read back.
    """
    host = host or default_host()
    stage = _Stage()
    start = time.monotonic()
    try:
        _run_steps(case, host, limits, stage)
        return CaseOutcome("ok", stage.name, seconds=time.monotonic() - start)
    except BlockFormatError as err:
        return CaseOutcome("rejected", stage.name, f"{type(err).__name__}: {err}", time.monotonic() - start)
    except CaseTimeout:
        return CaseOutcome(
            "failure", stage.name, "hang: per-case time bound expired", time.monotonic() - start
        )
    except BaseException:
        return CaseOutcome("failure", stage.name, traceback.format_exc(), time.monotonic() - start)


def _run_steps(case: FuzzCase, host: Host, limits: Limits, stage: _Stage) -> None:
    store, fmt = case.store, case.format
    stage.name = "probe"
    host.probe(store.read(0, min(PROBE_SIZE, store.size)), "fuzz")
    before = store.digest()
    view: GuestView | None = None
    try:
        stage.name = "open read-only"
        with _opened(host, fmt, store, limits, read_only=True) as image:
            stage.name = "read-only map and read"
            view = _snapshot(image, limits)
            stage.name = "info"
            image.info()
            stage.name = "check"
            _check(image, RepairMode.NONE)
    except BlockFormatError:
        view = None  # refused read-only; a read-write open may still repair it (a dirty log)
    if store.digest() != before:
        raise InvariantBroken("a read-only open changed the file")

    stage.name = "open read-write"
    with _opened(host, fmt, store, limits, read_only=False) as image:
        stage.name = "check -r all"
        result = _check(image, RepairMode.ALL)

    stage.name = "reopen after repair"
    try:
        with _opened(host, fmt, store, limits, read_only=True) as image:
            after = _snapshot(image, limits)
            recheck = _check(image, RepairMode.NONE)
    except BlockFormatError as err:
        if view is not None:
            raise InvariantBroken(
                f"repair made a readable image unreadable: {type(err).__name__}: {err}"
            ) from err
        raise
    if view is not None and result is not None and result.corruptions_fixed == 0 and after != view:
        raise InvariantBroken("repair changed guest data without reporting a fixed corruption")
    if result is not None and result.clean and recheck is not None and not recheck.clean:
        raise InvariantBroken(f"check after a complete repair is not clean: {recheck.messages}")

    stage.name = "guest write"
    _guest_write(host, fmt, store, limits)


def _check(image: Image, mode: RepairMode) -> CheckResult | None:
    """``Image.check``, or None for a format without checks (raw)."""
    try:
        return image.check(mode)
    except UnsupportedOperationError:
        return None


_PATTERN = bytes(range(256)) * 16  # 4 KiB that no format writes by itself


def _guest_write(host: Host, fmt: str, store: SparseBytes, limits: Limits) -> None:
    """Write a pattern in the middle of the disk; it must read back and leave its neighbours alone."""
    with _opened(host, fmt, store, limits, read_only=False) as image:
        size = image.size
        if size < len(_PATTERN):
            return
        offset = (size // 2) // len(_PATTERN) * len(_PATTERN)
        neighbours = [
            (o, min(len(_PATTERN), size - o)) for o in (offset - len(_PATTERN), offset + len(_PATTERN))
        ]
        neighbours = [(o, n) for o, n in neighbours if o >= 0 and n > 0]
        saved = [image.read_at(o, n) for o, n in neighbours]
        first = image.read_at(0, len(_PATTERN))
        image.write_at(offset, _PATTERN)
        image.flush()
    with _opened(host, fmt, store, limits, read_only=True) as image:
        if image.read_at(offset, len(_PATTERN)) != _PATTERN:
            raise InvariantBroken(f"a guest write at {offset} did not read back")
        if [image.read_at(o, n) for o, n in neighbours] != saved:
            raise InvariantBroken(f"a guest write at {offset} changed its neighbours")
        if offset >= len(_PATTERN) and image.read_at(0, len(_PATTERN)) != first:
            raise InvariantBroken(f"a guest write at {offset} changed the first 4 KiB")


# -- campaigns in memory-bounded workers -----------------------------------------------------------


@dataclass
class Failure:
    """One broken invariant, with what rebuilds its input."""

    seed_name: str
    seed_index: int
    case_seed: int
    outcome: CaseOutcome
    mutations: tuple[str, ...] = ()


@dataclass
class CampaignSummary:
    """What :func:`run_campaign` measured."""

    cases: int = 0
    ok: int = 0
    rejected: int = 0
    failures: list[Failure] = field(default_factory=list)
    slowest: tuple[float, str, int, str] = (0.0, "", 0, "")
    seconds: float = 0.0
    stages: dict[str, int] = field(default_factory=dict)

    @property
    def crash_free_rate(self) -> float:
        return 1.0 if not self.cases else 1.0 - len(self.failures) / self.cases

    def report(self) -> str:
        secs, seed, case_seed, stage = self.slowest
        return (
            f"fuzz: {self.cases} cases in {self.seconds:.1f} s ({self.ok} ok, {self.rejected} rejected, "
            f"{len(self.failures)} failures); crash-free rate {self.crash_free_rate:.6f}; "
            f"slowest case {secs:.3f} s ({seed} #{case_seed}, at {stage})"
        )


def _worker(
    conn: multiprocessing.connection.Connection,
    seeds: Sequence[Seed],
    limits: Limits,
    make_host: Callable[[], Host],
) -> None:
    bound_this_process(limits)
    host = make_host()
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        seed_index, case_seed = job
        try:
            case = make_case(seeds, seed_index, case_seed, host=host)
            signal.setitimer(signal.ITIMER_REAL, limits.seconds_per_case)
            try:
                outcome = check_invariants(case, host=host, limits=limits)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            mutations = case.mutations
        except BaseException:
            outcome = CaseOutcome("failure", "harness", traceback.format_exc())
            mutations = ()
        conn.send((outcome, mutations))


def bound_this_process(limits: Limits) -> None:
    """Apply a case's bounds to the whole process that runs cases: address space beyond what it
    already uses capped at ``limits.memory`` (``RLIMIT_AS``), and ``SIGALRM`` raising
    :class:`CaseTimeout`, so the caller arms ``signal.alarm`` per case."""
    usage = _address_space()
    if usage:
        resource.setrlimit(resource.RLIMIT_AS, (usage + limits.memory, resource.RLIM_INFINITY))

    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout()

    signal.signal(signal.SIGALRM, expire)


def _address_space() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class _Worker:
    def __init__(
        self, ctx: Any, seeds: Sequence[Seed], limits: Limits, make_host: Callable[[], Host]
    ) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, seeds, limits, make_host), daemon=True)
        self.args = (ctx, seeds, limits, make_host)
        self.proc.start()
        child.close()
        self.job: tuple[int, int] | None = None
        self.started = 0.0

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()


def run_campaign(
    seeds: Sequence[Seed],
    jobs: Iterator[tuple[int, int]],
    *,
    workers: int = 1,
    limits: Limits = Limits(),
    make_host: Callable[[], Host] = default_host,
    on_failure: Callable[[Failure], None] | None = None,
) -> CampaignSummary:
    """Run each ``(seed_index, case_seed)`` of *jobs* in forked workers and summarise.

    :param make_host: builds the host in each worker (a test can register a plugin under test).

    A worker that dies (a crash in C code, ``RLIMIT_AS`` hit outside Python's allocator) or stops
    answering within twice the case bound is killed, its case recorded as a failure, and replaced.
    """
    ctx = multiprocessing.get_context("fork")
    summary = CampaignSummary()
    started = time.monotonic()
    pool = [_Worker(ctx, seeds, limits, make_host) for _ in range(max(1, workers))]
    pending = iter(jobs)
    exhausted = False

    def record(worker: _Worker, outcome: CaseOutcome, mutations: tuple[str, ...]) -> None:
        assert worker.job is not None
        seed_index, case_seed = worker.job
        summary.cases += 1
        summary.stages[outcome.stage] = summary.stages.get(outcome.stage, 0) + 1
        if outcome.status == "ok":
            summary.ok += 1
        elif outcome.status == "rejected":
            summary.rejected += 1
        else:
            failure = Failure(seeds[seed_index].name, seed_index, case_seed, outcome, mutations)
            summary.failures.append(failure)
            if on_failure is not None:
                on_failure(failure)
        if outcome.seconds > summary.slowest[0]:
            summary.slowest = (outcome.seconds, seeds[seed_index].name, case_seed, outcome.stage)
        worker.job = None

    def feed(worker: _Worker) -> None:
        nonlocal exhausted
        if exhausted:
            return
        job = next(pending, None)
        if job is None:
            exhausted = True
            return
        worker.job = job
        worker.started = time.monotonic()
        worker.conn.send(job)

    try:
        for worker in pool:
            feed(worker)
        while any(w.job is not None for w in pool):
            busy = [w for w in pool if w.job is not None]
            ready = multiprocessing.connection.wait([w.conn for w in busy], timeout=0.5)
            for index, worker in enumerate(pool):
                if worker.job is None:
                    continue
                if worker.conn in ready:
                    try:
                        outcome, mutations = worker.conn.recv()
                    except EOFError:
                        worker.proc.join()
                        outcome = CaseOutcome(
                            "failure", "worker", f"worker died (exit {worker.proc.exitcode})"
                        )
                        mutations = ()
                        record(worker, outcome, mutations)
                        pool[index] = worker = _replace(worker)
                        feed(worker)
                        continue
                    record(worker, outcome, mutations)
                    feed(worker)
                elif time.monotonic() - worker.started > 2 * limits.seconds_per_case + 5:
                    outcome = CaseOutcome("failure", "worker", "hang: worker stopped answering", 0.0)
                    record(worker, outcome, ())
                    pool[index] = worker = _replace(worker)
                    feed(worker)
    finally:
        for worker in pool:
            if worker.job is None and worker.proc.is_alive():
                worker.conn.send(None)
            worker.stop()
    summary.seconds = time.monotonic() - started
    return summary


def _replace(worker: _Worker) -> _Worker:
    worker.stop()
    return _Worker(*worker.args)
