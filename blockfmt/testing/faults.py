"""A fault-injecting :class:`~blockfmt.fileio.ImageFile` for power-cut (crash-consistency) sweeps.

:class:`FaultInjectingFile` wraps a real file and counts the operations that change it (writes,
truncates, hole punches) and flushes. After the N-th of them the power goes out: that operation
and every later one raise :class:`PowerCut`, and the writes not yet flushed are, as the caller
chooses, all kept (the OS wrote them back anyway), all lost, or a random subset lost (a disk
that reorders its cache). The wrapped file then holds exactly what survived, so reopening it is
what a reboot would see. Every change is also recorded in :attr:`FaultInjectingFile.events`, so a
test can assert that a format never writes outside its legitimate ranges.

A sweep runs a workload once without a cut to count its operations, then once per cut point;
:func:`run_until_power_cut` does one such run::

    total = run_until_power_cut(path, "vhdx", requests, cut_after=None, lose=LoseUnflushed.NONE)[1]
    for cut in range(total):
        done, _ = run_until_power_cut(copy_of_path, "vhdx", requests, cut_after=cut, lose=LoseUnflushed.ALL)
        # reopen the copy: requests[:done] must be there, requests[done] may be partly there
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..fileio import ImageFile, OsImageFile

if TYPE_CHECKING:
    from ..driver import FormatDriver

__all__ = ["FaultInjectingFile", "IoEvent", "LoseUnflushed", "PowerCut", "run_until_power_cut"]


class PowerCut(Exception):
    """The simulated power failure.

    Deliberately not a :class:`~blockfmt.errors.BlockFormatError` nor an :class:`OSError`, so no
    library code can mistake it for an I/O error it handles: it always reaches the test.
    """


class LoseUnflushed(enum.Enum):
    """What happens at the cut to writes made since the last flush."""

    #: they all reach the disk
    NONE = "none"
    #: none of them reaches the disk
    ALL = "all"
    #: a random subset (seeded) reaches the disk; the rest are lost
    SOME = "some"


@dataclass(frozen=True, slots=True)
class IoEvent:
    """One operation that reached the wrapped file: ``write``, ``truncate``, ``punch`` or ``flush``."""

    kind: str
    offset: int = 0
    length: int = 0


@dataclass(slots=True)
class _Undo:
    """How to take back one unflushed change, and how to make it again."""

    event: IoEvent
    old_size: int
    old_bytes: bytes
    new_bytes: bytes | None


class FaultInjectingFile(ImageFile):
    """Wrap *inner* and cut the power after *cut_after* changing operations (None: never).

    :param cut_after: writes, truncates, hole punches and flushes allowed before the cut; the next
        one raises :class:`PowerCut` without reaching the file.
    :param lose: what happens at the cut to unflushed changes.
    :param seed: seeds the choice of lost writes for :attr:`LoseUnflushed.SOME`.
    """

    def __init__(
        self,
        inner: ImageFile,
        *,
        cut_after: int | None = None,
        lose: LoseUnflushed = LoseUnflushed.NONE,
        seed: int = 0,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.read_only = inner.read_only
        self.cut_after = cut_after
        self.lose = lose
        self._random = random.Random(seed)
        self.events: list[IoEvent] = []
        self.writes = 0
        self.flushes = 0
        self.cut = False
        self._unflushed: list[_Undo] = []

    @property
    def operations(self) -> int:
        """Changing operations and flushes that reached the file so far."""
        return self.writes + self.flushes

    # Section: the cut

    def power_cut(self) -> None:
        """Cut the power now: apply the loss policy to unflushed changes, refuse all further I/O."""
        if self.cut:
            return
        self.cut = True
        if self.lose is LoseUnflushed.NONE:
            self._unflushed.clear()
            return
        for undo in reversed(self._unflushed):
            self._take_back(undo)
        if self.lose is LoseUnflushed.SOME:
            for undo in self._unflushed:
                if self._random.random() < 0.5:
                    self._redo(undo)
        self._unflushed.clear()

    def _take_back(self, undo: _Undo) -> None:
        event = undo.event
        if event.kind in ("write", "punch"):
            self.inner.pwrite(undo.old_bytes, event.offset)
        elif event.kind == "truncate" and undo.old_bytes:
            self.inner.truncate(undo.old_size)
            self.inner.pwrite(undo.old_bytes, event.offset)
        self.inner.truncate(undo.old_size)

    def _redo(self, undo: _Undo) -> None:
        event = undo.event
        if event.kind == "write" and undo.new_bytes is not None:
            self.inner.pwrite(undo.new_bytes, event.offset)
        elif event.kind == "punch":
            self.inner.punch_hole(event.offset, event.length)
        elif event.kind == "truncate":
            self.inner.truncate(event.offset)

    def _admit(self, event: IoEvent) -> None:
        """Count *event*, or cut the power when the budget is spent."""
        if self.cut:
            raise PowerCut(f"power is off ({event.kind} at {event.offset})")
        if self.cut_after is not None and self.operations >= self.cut_after:
            self.power_cut()
            raise PowerCut(f"power cut before {event.kind} at {event.offset}")
        if event.kind == "flush":
            self.flushes += 1
        else:
            self.writes += 1
        self.events.append(event)

    def _remember(self, event: IoEvent, new_bytes: bytes | None) -> None:
        """Keep what an unflushed change overwrote, when the loss policy may need it."""
        if self.lose is LoseUnflushed.NONE:
            return
        old_size = self.inner.size()
        if event.kind == "truncate":
            start, length = event.offset, max(0, old_size - event.offset)
        else:
            start, length = event.offset, max(0, min(event.length, old_size - event.offset))
        self._unflushed.append(_Undo(event, old_size, self.inner.pread(length, start), new_bytes))

    # Section: ImageFile

    def preadinto(self, buf: memoryview | bytearray, offset: int) -> int:
        if self.cut:
            raise PowerCut(f"power is off (read at {offset})")
        return self.inner.preadinto(buf, offset)

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        event = IoEvent("write", offset, len(memoryview(data).cast("B")))
        self._admit(event)
        self._remember(event, bytes(data) if self.lose is LoseUnflushed.SOME else None)
        self.inner.pwrite(data, offset)

    def truncate(self, length: int) -> None:
        event = IoEvent("truncate", length)
        self._admit(event)
        self._remember(event, None)
        self.inner.truncate(length)

    def punch_hole(self, offset: int, length: int) -> None:
        event = IoEvent("punch", offset, length)
        self._admit(event)
        self._remember(event, None)
        self.inner.punch_hole(offset, length)

    def flush(self) -> None:
        self._admit(IoEvent("flush"))
        self.inner.flush()
        self._unflushed.clear()

    def size(self) -> int:
        if self.cut:
            raise PowerCut("power is off (size)")
        return self.inner.size()


def run_until_power_cut(
    path: str,
    format: str,
    requests: Iterable[Callable[[FormatDriver], object]],
    *,
    cut_after: int | None,
    lose: LoseUnflushed,
    seed: int = 0,
    prepare: Callable[[FormatDriver], object] | None = None,
) -> tuple[int, int]:
    """Open the image at *path* as *format* over a :class:`FaultInjectingFile` and run *requests*
    on its driver, each followed by a flush, until the power cut (never, with *cut_after* None:
    then the driver is closed as well).

    :param prepare: called with the driver before the first request (e.g. to attach a parent).
    :returns: (requests completed with their flush, operations the file saw).
    """
    from ..host import default_host

    inner = OsImageFile(path, read_only=False)
    faulty = FaultInjectingFile(inner, cut_after=cut_after, lose=lose, seed=seed)
    done = 0
    try:
        driver = default_host().open_driver(format, faulty, False, {})
        if prepare is not None:
            prepare(driver)
        for request in requests:
            request(driver)
            driver.flush()
            done += 1
        driver.close()
    except PowerCut:
        pass
    finally:
        inner.close()
    return done, faulty.operations
