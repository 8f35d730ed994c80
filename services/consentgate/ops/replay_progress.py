"""Progress of a replay on stderr: done/total, records/s, ETA.

On a terminal one line redrawn in place (a bar); otherwise (a log, CI) a plain line at most
every ``every`` seconds. ``total`` is the number of offsets in the range, so a range with
transaction markers or compacted gaps finishes a little below it. Pure but for the stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "format_eta"]


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        label: str = "replay",
        every: float = 1.0,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream = stream
        self.label = label
        self.every = every
        self.tty = stream.isatty() if tty is None else tty
        self.clock = clock
        self.started = clock()
        self._last = self.started
        self.done = 0

    def line(self, done: int, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        left = max(self.total - done, 0)
        eta = left / rate if rate > 0 else None
        share = done / self.total if self.total else 1.0
        text = (
            f"{self.label} {done:,}/{self.total:,} ({share:6.1%}) {rate:,.0f} records/s "
            f"ETA {format_eta(eta)}"
        )
        if self.tty:
            filled = round(min(share, 1.0) * 24)
            text = f"[{'#' * filled}{'.' * (24 - filled)}] " + text
        return text

    def update(self, done: int) -> None:
        """Show ``done`` if a line is due (every ``every`` s)."""
        self.done = done
        now = self.clock()
        if now - self._last < self.every:
            return
        self._last = now
        self._write(self.line(done, now))

    def finish(self) -> None:
        self._write(self.line(self.done, self.clock()))
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _write(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
