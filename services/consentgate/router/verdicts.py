"""A memory of decide_all's answers, exact by construction: the cache guard.

``decide_all(event, timeline, sinks, now)`` over a valid event depends on the event only
through its source (hence the sinks), subject id, opt-out signals and event time ``t``,
and on time only through comparisons of ``t`` and ``now`` with instants of the timeline:
the starts and ends of its grant intervals (``start <= x < end``), the effective times of
the grants inside them (``evidence_at``) and the erasure (``t < erased_at``). Every one of
those comparisons is ``boundary <= x``, so between two consecutive boundaries, in a
*window* ``[b_i, b_i+1)``, nothing changes: the answer is a function of which window ``t``
falls in and which window ``now`` falls in (``bisect_right`` over the sorted boundaries).

A verdict is kept per timeline (by identity: timelines are immutable), in one entry per
subject that holds the subject's latest timeline: a subject's new timeline (its consent
changed) replaces the entry and its verdicts, rather than adding one (an entry per timeline
kept every superseded timeline alive until the memory was full); within the entry, under
(source, subject, signals, window of t, window of now). A grant that starts or ends
between two events of a subject is a boundary between their windows: the later event is
decided anew. An event that is invalid at ``now`` (SourceEvent.problem) is never answered
from memory. Overrides (stale view, unreadable consent, erased, misrouted) deny every sink
of a source alike and are kept per (source, reason).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consentgate.consent.timeline import Timeline
from consentgate.policy import Decision, Defaults, ReasonCode, Sink, SourceEvent, decide_all

__all__ = ["Verdict", "VerdictMemory", "boundaries"]

Decisions = tuple[tuple[Sink, Decision], ...]


@dataclass(slots=True)
class Verdict:
    """Every sink's decision for an event, and (once written) the decision record's
    encoded ``outcomes`` array for exactly these decisions and the parts of the allowed
    sinks' records that are the same for every event answered with it (plan.py's)."""

    decisions: Decisions
    outcomes: bytes | None = None
    allowed: tuple[Any, ...] | None = None


def boundaries(timeline: Timeline) -> list[datetime]:
    """The sorted instants at which some answer of ``timeline`` may change."""
    points: set[datetime] = set()
    if timeline.erased_at is not None:
        points.add(timeline.erased_at)
    for purpose, recipient in timeline.keys():  # noqa: SIM118 - a tuple, not a dict
        for interval in timeline.intervals(purpose, recipient):
            points.add(interval.start)
            if interval.end is not None:
                points.add(interval.end)
            points.update(g.effective_time for g in interval.grants)
    return sorted(points)


class _Entry:
    __slots__ = ("bounds", "timeline", "verdicts")

    def __init__(self, timeline: Timeline | None) -> None:
        self.timeline = timeline
        self.bounds = boundaries(timeline) if timeline is not None else []
        self.verdicts: dict[tuple[object, ...], Verdict] = {}


class VerdictMemory:
    """Verdicts of the last ``timelines`` timelines (and of no timeline, and overrides)."""

    def __init__(self, defaults: Defaults, *, timelines: int = 4096, per_timeline: int = 64):
        self.defaults = defaults
        self._clock_skew = defaults.clock_skew  # a new timedelta per read: read once
        self._size = timelines
        self._per_timeline = per_timeline
        self._entries: dict[object, _Entry] = {}  # subject (else id(timeline)) -> entry
        self._none = _Entry(None)
        self._overrides: dict[tuple[str, ReasonCode], Verdict] = {}

    def verdict(
        self,
        event: SourceEvent,
        timeline: Timeline | None,
        sinks: Sequence[Sink],
        now: datetime,
        override: ReasonCode | None = None,
    ) -> Verdict:
        """decide_all's answer (or every sink denied as ``override``), from memory if the
        same answer is known for this window."""
        if override is not None:
            known = self._overrides.get((event.source, override))
            if known is None:
                denied = Decision.deny(override)
                known = Verdict(tuple((s, denied) for s in sinks))
                self._overrides[(event.source, override)] = known
            return known
        t = event.event_time
        if t is None or event.problem(now, self._clock_skew) is not None:
            return Verdict(tuple(decide_all(event, timeline, sinks, now, self.defaults)))
        entry = self._entry(timeline, event.subject_id)
        bounds = entry.bounds
        key = (
            event.source,
            event.subject_id,
            event.signals,
            bisect_right(bounds, t),
            bisect_right(bounds, now),
        )
        known = entry.verdicts.get(key)
        if known is None:
            known = Verdict(tuple(decide_all(event, timeline, sinks, now, self.defaults)))
            if len(entry.verdicts) >= self._per_timeline:
                entry.verdicts.clear()
            entry.verdicts[key] = known
        return known

    def _entry(self, timeline: Timeline | None, subject: str | None) -> _Entry:
        if timeline is None:
            return self._none
        entries = self._entries
        key: object = subject if subject is not None else id(timeline)
        entry = entries.get(key)
        if entry is None or entry.timeline is not timeline:
            if entry is None and len(entries) >= self._size:
                del entries[next(iter(entries))]  # the oldest
            entry = entries[key] = _Entry(timeline)
        return entry
