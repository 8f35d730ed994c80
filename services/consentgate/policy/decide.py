"""The decision function: may this event go to this sink? Pure, no I/O, default deny.

The rule (DESIGN §2), checked in this order, the first failing step naming the reason:

1. the event is valid: event id, subject id and event time present, event time not further
   ahead of ``now`` than the clock skew, else ``invalid_event`` (the router dead-letters);
2. the subject has a timeline (``no_consent_record``) and is not erased (``erased``; an
   event timed before an erasure is ``erased`` even if the subject granted again later);
3. the sink's grant covered the event time (``not_granted_at_event_time``): for a
   first-party sink the grant (purpose, None), for a partner sink (purpose, recipient);
4. that same grant interval still holds at ``now``: the grant must not have lapsed between
   the event and now, even if it was given again since (``withdrawn``, ``expired``, or
   ``not_in_force`` for an event within the clock skew ahead of a grant that starts after
   now);
5. every extra purpose of the sink is granted first-party, (extra, None), over the same span
   from event time to now (``missing_purpose``): "I agree to be profiled" is consent to the
   first party; delivering a profile to a partner needs partner_sharing for that partner too;
6. no opt-out signal on the event that the sink honours (``opt_out_signal``).
Only then ``allowed``, with the evidence of the grant in force at the event's time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from consentgate.consent.intervals import EndReason
from consentgate.consent.timeline import Timeline
from consentgate.policy.event import SourceEvent
from consentgate.policy.model import Defaults, Sink
from consentgate.policy.reasons import Decision, ReasonCode

__all__ = ["decide", "decide_all"]

_END_REASONS = {
    EndReason.WITHDRAWN: ReasonCode.WITHDRAWN,
    EndReason.EXPIRED: ReasonCode.EXPIRED,
    EndReason.ERASED: ReasonCode.ERASED,
}
_NO_RECORD = Decision.deny(ReasonCode.NO_CONSENT_RECORD)
_NOT_GRANTED = Decision.deny(ReasonCode.NOT_GRANTED_AT_EVENT_TIME)


def decide(
    event: SourceEvent, timeline: Timeline | None, sink: Sink, now: datetime, defaults: Defaults
) -> Decision:
    """The decision for one event and one sink at processing time ``now`` (aware)."""
    problem = event.problem(now, defaults.clock_skew)
    if problem is not None:
        return Decision.deny(ReasonCode.INVALID_EVENT, detail=problem)
    return _decide_valid(event, timeline, sink, now)


def decide_all(
    event: SourceEvent,
    timeline: Timeline | None,
    sinks: Sequence[Sink],
    now: datetime,
    defaults: Defaults,
) -> list[tuple[Sink, Decision]]:
    """The decision for every sink (usually ``policy.sinks_for(event.source)``), in order.

    Same result as :func:`decide` per sink, validating the event only once and judging
    what depends on the event and timeline alone (no record, another subject, erased) once.
    """
    problem = event.problem(now, defaults.clock_skew)
    if problem is not None:
        invalid = Decision.deny(ReasonCode.INVALID_EVENT, detail=problem)
        return [(sink, invalid) for sink in sinks]
    t = event.event_time
    if t is None:  # excluded by SourceEvent.problem; keeps the types honest
        missing = Decision.deny(ReasonCode.INVALID_EVENT, detail="missing event time")
        return [(sink, missing) for sink in sinks]
    # the steps of _decide_valid after the sink's source check that do not depend on the sink
    common = _subject_denial(event, t, timeline)
    # keys with a visible interval: for any other key interval_at is None (step 3 denies)
    granted = frozenset(timeline.keys()) if timeline is not None and common is None else ()
    out: list[tuple[Sink, Decision]] = []
    for sink in sinks:
        if sink.source != event.source:
            out.append((sink, _wrong_source(event, sink)))
        elif common is not None:
            out.append((sink, common))
        elif (sink.purpose, sink.recipient) not in granted:
            out.append((sink, _NOT_GRANTED))
        elif timeline is not None:  # always, when common is None
            out.append((sink, _decide_grant(event, t, timeline, sink, now)))
        else:
            out.append((sink, _NO_RECORD))
    return out


def _decide_valid(
    event: SourceEvent, timeline: Timeline | None, sink: Sink, now: datetime
) -> Decision:
    t = event.event_time
    if t is None:  # excluded by SourceEvent.problem; keeps the types honest
        return Decision.deny(ReasonCode.INVALID_EVENT, detail="missing event time")
    if sink.source != event.source:
        return _wrong_source(event, sink)
    denial = _subject_denial(event, t, timeline)
    if denial is not None:
        return denial
    if timeline is None:  # denied above; keeps the types honest
        return _NO_RECORD
    return _decide_grant(event, t, timeline, sink, now)


def _wrong_source(event: SourceEvent, sink: Sink) -> Decision:
    detail = f"sink {sink.name} is fed by {sink.source}, not {event.source}"
    return Decision.deny(ReasonCode.POLICY_ERROR, detail=detail)


def _subject_denial(event: SourceEvent, t: datetime, timeline: Timeline | None) -> Decision | None:
    """Step 2 of the rule, the same for every sink: no record, another subject, erased."""
    if timeline is None:
        return _NO_RECORD
    if timeline.subject_id != event.subject_id:
        return Decision.deny(ReasonCode.NO_CONSENT_RECORD, detail="timeline of another subject")
    erased_at = timeline.erased_at
    if erased_at is not None and (timeline.erased or t < erased_at):
        return Decision.deny(ReasonCode.ERASED, change_id=timeline.erased_by)
    return None


def _decide_grant(
    event: SourceEvent, t: datetime, timeline: Timeline, sink: Sink, now: datetime
) -> Decision:
    interval = timeline.interval_at(sink.purpose, sink.recipient, t)
    if interval is None:
        return _NOT_GRANTED
    if not interval.contains(now):
        if interval.end is not None and now >= interval.end and interval.end_reason is not None:
            reason = _END_REASONS[interval.end_reason]
            return Decision.deny(reason, change_id=interval.ended_by)
        return Decision.deny(ReasonCode.NOT_IN_FORCE, detail="grant starts after now")
    for extra in sink.extra_purposes:
        extra_interval = timeline.interval_at(extra, None, t)
        if extra_interval is None or not extra_interval.contains(now):
            return Decision.deny(ReasonCode.MISSING_PURPOSE, detail=extra)
    if sink.opt_out_signals and not event.signals.isdisjoint(sink.opt_out_signals):
        raised = sorted(event.signals.intersection(sink.opt_out_signals))
        return Decision.deny(ReasonCode.OPT_OUT_SIGNAL, detail=",".join(raised))
    return Decision.allow(interval.evidence_at(t))
