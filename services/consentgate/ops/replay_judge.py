"""One source record judged the way the router judges it, on the replay's consent. Pure but
for the wall clock.

Parse and validate at the wall clock (a record the router would dead-letter is dead-lettered
again), then the router's placement check (an event on another partition than its
subject's is denied and dead-lettered, one not keyed by its subject dead-lettered, as the
router does), then the consent of the
replay's mode (:class:`~consentgate.ops.replay_consent.ConsentSource`) and the router core's
plan at the mode's processing time (``now``: the wall clock; ``event-time``: the event's
time). No gate and no ``consent_state_stale``: the replay's consent is complete when it
starts (the whole state plus the changes after it, or the whole history).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from consentgate.ops.replay_consent import ConsentSource
from consentgate.ops.replay_live import EventRef
from consentgate.router.judge import Judge
from consentgate.router.plan import RawRecord, RoutePlan

__all__ = ["judge_record"]


def judge_record(
    judge: Judge,
    consent: ConsentSource,
    rec: RawRecord,
    uncached: Callable[[EventRef], bool] | None = None,
) -> tuple[RoutePlan, EventRef, datetime]:
    """The core's plan of ``rec``, how sinks name the event, and when it was judged (the
    processing time of the consent mode). ``uncached(event)`` true: planned without adding
    to the provision memory (``Router.plan_uncached``: the same outputs)."""
    core = judge.core
    wall = datetime.now(UTC)
    parsed = core.parse(rec, wall)
    if isinstance(parsed, RoutePlan):
        return parsed, EventRef(None, rec.where), wall
    event = parsed.event
    ids = EventRef(event.event_id, rec.where, event.subject_id)
    t = event.event_time or wall  # never None once parsed
    now = consent.judged_at(t, wall)
    misrouted = judge.misplaced(parsed, now)
    if misrouted is not None:
        return misrouted, ids, now
    c = consent.consent(event.subject_id or "", t)
    if uncached is not None and uncached(ids):
        return core.plan_uncached(parsed, c.timeline, now, override=c.override), ids, now
    return core.plan(parsed, c.timeline, now, override=c.override), ids, now
