"""The time-correct gate: may an event be judged against the consent view yet?

DESIGN §2 "Time-correct join": the router never judges an event against a consent view older
than the event. Per consent partition this module keeps

- observations ``(observed_at, end_offset)``: the partition's end offset, asked for at wall
  time ``observed_at`` (stamped *before* the request is sent, so every record appended before
  ``observed_at`` has an offset below ``end_offset``);
- ``position``: the next offset the consent view has not applied yet (last applied + 1).

An event with event time ``t`` is READY on partition ``p`` when ``position(p) >= end`` for the
earliest observation with ``observed_at >= t + clock_skew``: the view then holds every consent
record appended before the event happened, even if the event's clock ran ``clock_skew`` behind
ours. Otherwise it WAITs (new observations and applied records wake it up) until ``max_wait``
has passed since it started waiting, and is then STALE (deny as ``consent_state_stale``).

Staleness is judged per event, against what the view could know about *that* event: each
event's wait starts when the worker received it (``waiting_since`` = its arrival), so events
queued behind a waiting one wait concurrently with it and a stalled consent partition costs one
``max_wait`` for the whole queue, not one per event; an event whose required offset the view
has reached is READY whatever happened to the events before it. An idle consent partition is
never stale: its end offset does not move, so each new observation keeps it READY.

A *patient* check (the router's own reading of consent.changes) is not STALE while the
reader still moves: a position that advanced (on any partition: one consumer reads them all,
a backlog in bursts of one partition after another; or an assignment or rewind that starts
the reading) less than ``max_wait`` ago is a reader catching up on a backlog, not a consent
pipeline that stopped, so the event WAITs. It becomes READY once the reader reaches its
offset (the required offset is fixed, positions only grow); the caller makes a check
impatient where the reader cannot reach it (a partition it paused). Without this, a router
started on a consent.changes log of 245,279 changes denied every one of the full case's
82,488 events as stale while it read them.

Pure: no I/O, no clocks; every time is an argument (wall seconds for event and observation
times, any monotonic seconds for ``waiting_since``/``now_mono``).
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass, field

__all__ = ["GateVerdict", "PartitionWatermarks", "WatermarkTracker"]


class GateVerdict(enum.Enum):
    READY = "ready"
    WAIT = "wait"
    STALE = "stale"


@dataclass
class PartitionWatermarks:
    """Observations and applied position of one consent partition."""

    times: list[float] = field(default_factory=list)  # observed_at, ascending
    ends: list[int] = field(default_factory=list)  # end offset at times[i], non-decreasing
    position: int | None = None  # next offset not yet applied; None = unknown
    advanced_at: float | None = None  # monotonic time the position last grew (if told)


class WatermarkTracker:
    """Per-partition end-offset observations vs. the consent view's applied position."""

    def __init__(self, *, clock_skew: float = 0.0, history: float = 300.0) -> None:
        if clock_skew < 0 or history <= 0:
            raise ValueError("clock_skew must be >= 0 and history > 0")
        self.clock_skew = clock_skew
        self.history = history
        self._parts: dict[int, PartitionWatermarks] = {}
        self._advanced_at: float | None = None  # any partition's position, or an assignment

    def partition(self, partition: int) -> PartitionWatermarks:
        return self._parts.setdefault(partition, PartitionWatermarks())

    def observe_end(self, partition: int, end_offset: int, observed_at: float) -> None:
        """Record that ``partition`` ended at ``end_offset`` (asked at ``observed_at``)."""
        wm = self.partition(partition)
        if wm.times and observed_at < wm.times[-1]:
            return  # a late answer to an older request: a newer one is already known
        if wm.ends and end_offset < wm.ends[-1]:
            # the log shrank (topic re-created, records deleted): old observations are void
            wm.times.clear()
            wm.ends.clear()
        if wm.ends and end_offset == wm.ends[-1]:
            # same end: moving the stamp forward is exact (the earliest observation at or
            # after any t still yields this end) and keeps the history short
            wm.times[-1] = observed_at
        else:
            wm.times.append(observed_at)
            wm.ends.append(end_offset)
        self._prune(wm, observed_at)

    def observe_position(
        self, partition: int, position: int, now_mono: float | None = None
    ) -> None:
        """The consent view has applied every record of ``partition`` below ``position``
        (seen at monotonic ``now_mono``, for patient checks)."""
        wm = self.partition(partition)
        if wm.position is None or position > wm.position:
            wm.position = position
            if now_mono is not None:
                wm.advanced_at = now_mono
                self._advanced_at = now_mono

    def reset_position(self, partition: int, now_mono: float | None = None) -> None:
        """The partition was revoked, assigned or rewound: its position is unknown again
        (and reading starts at ``now_mono``, for patient checks)."""
        wm = self.partition(partition)
        wm.position = None
        wm.advanced_at = None
        if now_mono is not None:
            self._advanced_at = now_mono

    def required_offset(self, partition: int, event_time: float) -> int | None:
        """End offset the view must reach for an event at ``event_time``; None = not known yet."""
        wm = self._parts.get(partition)
        if wm is None or not wm.times:
            return None
        i = bisect.bisect_left(wm.times, event_time + self.clock_skew)
        return wm.ends[i] if i < len(wm.ends) else None

    def check(
        self,
        partition: int,
        event_time: float,
        *,
        waiting_since: float,
        now_mono: float,
        max_wait: float,
        patient: bool = False,
    ) -> GateVerdict:
        """READY, WAIT or STALE for an event that started waiting at ``waiting_since``;
        ``patient``: not STALE while the position advanced within ``max_wait``."""
        wm = self.partition(partition)
        required = self.required_offset(partition, event_time)
        position = wm.position
        if required is not None and position is not None and position >= required:
            return GateVerdict.READY
        if now_mono - waiting_since < max_wait:
            return GateVerdict.WAIT
        moved = max((m for m in (wm.advanced_at, self._advanced_at) if m is not None), default=None)
        if patient and moved is not None and now_mono - moved < max_wait:
            return GateVerdict.WAIT
        return GateVerdict.STALE

    def lag(self, partition: int) -> int | None:
        """Records between the applied position and the newest observed end (for metrics)."""
        wm = self._parts.get(partition)
        if wm is None or not wm.ends:
            return None
        return max(0, wm.ends[-1] - (wm.position or 0))

    def _prune(self, wm: PartitionWatermarks, now: float) -> None:
        # keep the newest observation always; drop those older than the history window.
        # An event older than every kept observation uses the oldest kept one: still an
        # observation at or after its time, only a little stricter than needed.
        cut = bisect.bisect_left(wm.times, now - self.history, hi=len(wm.times) - 1)
        if cut:
            del wm.times[:cut]
            del wm.ends[:cut]
