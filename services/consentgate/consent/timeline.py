"""A subject's consent timeline: building it from changes, trimming it, asking it questions.

Design (why the compacted record stores *changes*, not intervals): the record keeps the
retained ``ConsentChange``s themselves, sorted by ``(effective_time, recorded_time,
change_id)`` and unique by ``change_id``; grant intervals are derived from them
(:mod:`consentgate.consent.intervals`) when a :class:`Timeline` view is built. With the
changes as the state, ``apply`` is a set insertion followed by a sort, so:

- idempotent by change id: a change already retained (or wiped by an erase) is a no-op,
  and so is a retry of it (same id, same intent, other times: :func:`same_intent`);
- independent of arrival order: the same set of changes gives the same record, including
  ``version`` (number of distinct changes applied) and ``updated_at`` (greatest
  ``recorded_time``): a late change with an old effective time simply sorts into place and
  may split or end an interval it belongs in;
- every answer comes with evidence (the change that granted).
Storing intervals instead would need the changes anyway to re-derive them when a late
change lands in the middle.

Erasure: an ERASE wipes every change effective before it (only their ids are kept, so a
re-delivery stays a no-op) and denies everything; events timed before the erasure never
flow again. A later GRANT re-creates consent from its own effective time (a subject may come
back); a change effective before the latest ERASE is wiped on arrival.

Bounded history: ``trim(timeline, before)`` drops changes that only explain intervals which
ended before ``before``. Per grant key it keeps every change effective at or after
``before`` plus the *last* change before it: that one alone fixes the state at ``before``,
and it is the barrier that keeps a late change older than it from reviving a grant. So no
answer for any time ``>= before`` changes, the current state is never trimmed, and a late
change still lands correctly. The view hides intervals that ended before ``before``. The
watermark is stored (``trimmed_before``); ``apply`` re-trims at it, and a change that falls
entirely before it is a no-op (not counted: within the horizon ``version`` is exact).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from consentgate.consent.intervals import Evidence, GrantInterval, GrantKey, build_intervals
from consentgate.errors import ValidationError
from consentgate.models.consent import (
    ConsentAction,
    ConsentChange,
    ConsentTimeline,
    TimelineChange,
)

__all__ = ["Timeline", "apply", "horizon_start", "same_intent", "trim"]


class Timeline:
    """An immutable, queryable view of one subject's :class:`ConsentTimeline` record.

    Build it once per record and query it many times: the grant intervals are derived on
    the first query and kept.
    ``erased`` is true when the subject's latest change is an ERASE (nothing since).
    """

    __slots__ = ("_intervals", "erased", "record")

    def __init__(self, record: ConsentTimeline) -> None:
        self.record = record
        self.erased = record.erased_at is not None and len(record.changes) == 1
        self._intervals: dict[GrantKey, tuple[GrantInterval, ...]] | None = None

    def _index(self) -> dict[GrantKey, tuple[GrantInterval, ...]]:
        """Visible grant intervals per key, derived on first use."""
        if self._intervals is None:
            cutoff = self.record.trimmed_before
            built = build_intervals(self.record.changes)  # every key has an interval
            if cutoff is None:  # nothing trimmed: every interval is visible
                self._intervals = built
            else:
                self._intervals = {}
                for key, intervals in built.items():
                    visible = [i for i in intervals if not _ended_before(i, cutoff)]
                    if visible:
                        self._intervals[key] = tuple(visible)
        return self._intervals

    @property
    def subject_id(self) -> str:
        return self.record.subject_id

    @property
    def erased_at(self) -> datetime | None:
        return self.record.erased_at

    @property
    def erased_by(self) -> str | None:
        """Id of the retained ERASE change (the one ``erased_at`` comes from), if any."""
        return self.record.changes[0].change_id if self.record.erased_at is not None else None

    @property
    def version(self) -> int:
        return self.record.version

    def keys(self) -> tuple[GrantKey, ...]:
        """Grant keys with at least one visible interval."""
        return tuple(self._index())

    def intervals(self, purpose: str, recipient: str | None) -> tuple[GrantInterval, ...]:
        return self._index().get((purpose, recipient), ())

    def interval_at(self, purpose: str, recipient: str | None, t: datetime) -> GrantInterval | None:
        """The grant interval of (purpose, recipient) containing ``t``, if any."""
        for interval in reversed(self._index().get((purpose, recipient), ())):
            if interval.contains(t):
                return interval
        return None

    def granted_at(self, purpose: str, recipient: str | None, t: datetime) -> Evidence | None:
        """Evidence of the grant of (purpose, recipient) in force at ``t``, or None."""
        interval = self.interval_at(purpose, recipient, t)
        return None if interval is None else interval.evidence_at(t)

    def in_force(self, purpose: str, recipient: str | None, now: datetime) -> Evidence | None:
        """Evidence of the grant in force at ``now``: not withdrawn, not expired, not erased."""
        return self.granted_at(purpose, recipient, now)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timeline) and other.record == self.record

    def __hash__(self) -> int:
        return hash(self.record)

    def __repr__(self) -> str:
        return f"Timeline({self.subject_id!r}, version={self.version}, keys={self.keys()})"


def apply(timeline: Timeline | None, change: ConsentChange) -> Timeline:
    """The timeline with ``change`` applied (a new subject's timeline if ``timeline`` is None).

    Raises :class:`~consentgate.errors.ValidationError` if the change is for another subject
    or reuses a retained change id with different content.
    """
    entry = TimelineChange.of(change)
    if timeline is None:
        record = ConsentTimeline(
            subject_id=change.subject_id, version=0, updated_at=change.recorded_time
        )
    else:
        record = timeline.record
        if change.subject_id != record.subject_id:
            raise ValidationError(
                f"change {change.change_id} is for another subject than this timeline",
                path="subject_id",
            )
        retained = next((c for c in record.changes if c.change_id == change.change_id), None)
        if retained is not None and not same_intent(retained, entry):
            raise ValidationError(
                f"change id {change.change_id} reused for a different change",
                path="change_id",
            )
        if retained is not None or change.change_id in record.erased_change_ids:
            return timeline
    changes = sorted((*record.changes, entry), key=lambda c: c.order_key)
    erased_ids = set(record.erased_change_ids)
    last_erase = max(
        (i for i, c in enumerate(changes) if c.action is ConsentAction.ERASE), default=None
    )
    if last_erase is not None:
        erased_ids.update(c.change_id for c in changes[:last_erase])
        changes = changes[last_erase:]
    updated = ConsentTimeline(
        subject_id=record.subject_id,
        version=record.version + 1,
        updated_at=max(record.updated_at, change.recorded_time),
        erased_at=changes[0].effective_time if last_erase is not None else None,
        trimmed_before=record.trimmed_before,
        changes=tuple(changes),
        erased_change_ids=tuple(sorted(erased_ids)),
    )
    if record.trimmed_before is not None:
        updated = _trim(updated, record.trimmed_before)
        kept = {c.change_id for c in updated.changes} | set(updated.erased_change_ids)
        if timeline is not None and change.change_id not in kept:
            return timeline  # entirely before the horizon: changes no answer
    return Timeline(updated)


_TIMES = frozenset({"effective_time", "recorded_time"})


def same_intent(a: TimelineChange, b: TimelineChange) -> bool:
    """Whether two changes with one id are the same request (a retry): equal but for times.

    The service sets ``recorded_time`` (and a defaulted ``effective_time``) on each attempt,
    so a retry differs in its times only; the first one logged is kept.
    """
    return all(getattr(a, f) == getattr(b, f) for f in type(a).model_fields if f not in _TIMES)


def trim(timeline: Timeline, before: datetime) -> Timeline:
    """Drop history that only explains intervals ended before ``before`` (never un-trims)."""
    record = timeline.record
    if record.trimmed_before is not None and record.trimmed_before >= before:
        return timeline
    trimmed = _trim(record, before)
    return timeline if trimmed == record else Timeline(trimmed)


def horizon_start(now: datetime, history_horizon_days: int) -> datetime:
    """The instant before which history may be trimmed: ``now - history_horizon_days``."""
    return now - timedelta(days=history_horizon_days)


def _trim(record: ConsentTimeline, before: datetime) -> ConsentTimeline:
    last_before: dict[GrantKey, TimelineChange] = {}
    for change in record.changes:
        key = change.grant_key
        if key is not None and change.effective_time < before:
            last_before[key] = change  # canonical order: the last one wins
    kept = tuple(
        c
        for c in record.changes
        if c.effective_time >= before or c.grant_key is None or last_before[c.grant_key] is c
    )
    erase_is_old = record.erased_at is not None and record.erased_at < before
    return record.model_copy(
        update={
            "changes": kept,
            "trimmed_before": before,
            "erased_change_ids": () if erase_is_old else record.erased_change_ids,
        }
    )


def _ended_before(interval: GrantInterval, cutoff: datetime | None) -> bool:
    return cutoff is not None and interval.end is not None and interval.end <= cutoff
