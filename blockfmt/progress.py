"""Progress of a long copy (convert, commit, rebase) as the percentages a caller's callback gets."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["PROGRESS_STEP", "Progress", "ProgressCallback"]

#: progress is reported when it advanced by at least this many percent (about 200 calls at most)
PROGRESS_STEP = 0.5

ProgressCallback = Callable[[float], None]


class Progress:
    """Turns bytes done into throttled, monotone percentages: 0.0 first, 100.0 last, a few hundred
    calls at most, so a caller (qemu-img's ``-p`` line) never floods its output."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self._total = total
        self._callback = callback
        self._reported = 0.0
        if callback is not None:
            callback(0.0)

    def advance_to(self, done: int) -> None:
        if self._callback is None or self._total == 0:
            return
        percent = min(100.0, 100.0 * done / self._total)
        if percent - self._reported >= PROGRESS_STEP and percent < 100.0:
            self._reported = percent
            self._callback(percent)

    def finish(self) -> None:
        if self._callback is not None:
            self._reported = 100.0
            self._callback(100.0)
