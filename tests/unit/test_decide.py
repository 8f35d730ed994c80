"""decide(): a table with every reason code, and properties against the consent definition."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentgate.consent import Timeline, apply
from consentgate.models.consent import ConsentAction, ConsentChange
from consentgate.policy import Decision, ReasonCode, Sink, decide, decide_all
from tests.unit.consent_strategies import (
    MANY,
    SOME,
    SUBJECT,
    at,
    change_sets,
    erased_before,
    reference_continuous,
    reference_granted,
    times,
)
from tests.unit.policy_fixtures import DEFAULTS, POLICY, SINKS, event
from tests.unit.test_timeline import change

pytestmark = pytest.mark.unit

ROUTER_ONLY = {
    ReasonCode.CONSENT_STATE_STALE,
    ReasonCode.CONSENT_UNREADABLE,
    ReasonCode.MISROUTED,
}


def timeline(*changes: ConsentChange) -> Timeline | None:
    tl = None
    for c in changes:
        tl = apply(tl, c)
    return tl


def g(
    cid: str, minute: int, purpose: str = "analytics", rcpt: str | None = None, **kw: int
) -> ConsentChange:
    return change(cid, "GRANT", minute, purpose, rcpt, **kw)


def w(cid: str, minute: int, purpose: str = "analytics", rcpt: str | None = None) -> ConsentChange:
    return change(cid, "WITHDRAW", minute, purpose, rcpt)


ACME = ("partner_sharing", "acme-corp")
GPC = frozenset({"gpc"})


@dataclass(frozen=True)
class Case:
    """Event at minute ``t`` for ``sink``, decided at minute ``now`` against ``changes``."""

    name: str
    sink: str
    changes: tuple[ConsentChange, ...]
    reason: ReasonCode
    change_id: str | None = None
    t: int = 5
    now: int = 10
    source: str = "browsing"
    signals: frozenset[str] = frozenset()
    subject: str | None = SUBJECT
    event_id: str | None = "e-0001"


def scores(
    name: str, changes: tuple[ConsentChange, ...], reason: ReasonCode, cid: str | None = None
) -> Case:
    """A case for the partner score sink (partner_sharing:acme-corp + profiling)."""
    return Case(name, "partner.acme-corp.scores", changes, reason, cid, source="scores")


TABLE = [
    Case("first-party grant", "analytics", (g("g1", 1),), ReasonCode.ALLOWED, "g1"),
    Case(
        "partner grant naming the recipient",
        "partner.acme-corp.browsing",
        (g("g1", 1, *ACME),),
        ReasonCode.ALLOWED,
        "g1",
    ),
    Case(
        "evidence is the grant at event time",
        "analytics",
        (g("g1", 1), g("g2", 7)),
        ReasonCode.ALLOWED,
        "g1",
    ),
    Case(
        "event within clock skew", "analytics", (g("g1", 1),), ReasonCode.ALLOWED, "g1", t=10, now=9
    ),
    Case(
        "gpc does not apply to analytics",
        "analytics",
        (g("g1", 1),),
        ReasonCode.ALLOWED,
        "g1",
        signals=GPC,
    ),
    scores(
        "profile to a partner with both consents",
        (g("g1", 1, *ACME), g("g2", 1, "profiling")),
        ReasonCode.ALLOWED,
        "g1",
    ),
    Case("missing subject", "analytics", (g("g1", 1),), ReasonCode.INVALID_EVENT, subject=None),
    Case("missing event id", "analytics", (g("g1", 1),), ReasonCode.INVALID_EVENT, event_id=None),
    Case("event too far ahead", "analytics", (g("g1", 1),), ReasonCode.INVALID_EVENT, t=12),
    Case("unknown subject", "analytics", (), ReasonCode.NO_CONSENT_RECORD),
    Case("erased", "analytics", (g("g1", 1), change("e1", "ERASE", 3)), ReasonCode.ERASED, "e1"),
    Case(
        "event before erasure, granted again since",
        "analytics",
        (g("g1", 1), change("e1", "ERASE", 3), g("g2", 4)),
        ReasonCode.ERASED,
        "e1",
        t=2,
    ),
    Case(
        "granted after the event", "analytics", (g("g1", 6),), ReasonCode.NOT_GRANTED_AT_EVENT_TIME
    ),
    Case(
        "another recipient's grant",
        "partner.acme-corp.browsing",
        (g("g1", 1, "partner_sharing", "beta-inc"),),
        ReasonCode.NOT_GRANTED_AT_EVENT_TIME,
    ),
    Case(
        "first-party grant for a partner sink",
        "partner.acme-corp.browsing",
        (g("g1", 1, "partner_sharing"),),
        ReasonCode.NOT_GRANTED_AT_EVENT_TIME,
    ),
    Case("withdrawn since", "analytics", (g("g1", 1), w("w1", 7)), ReasonCode.WITHDRAWN, "w1"),
    Case(
        "withdrawn and given again",
        "analytics",
        (g("g1", 1), w("w1", 6), g("g2", 7)),
        ReasonCode.WITHDRAWN,
        "w1",
    ),
    Case("expired since", "analytics", (g("g1", 1, expires=8),), ReasonCode.EXPIRED, "g1"),
    Case(
        "grant starts after now", "analytics", (g("g1", 10),), ReasonCode.NOT_IN_FORCE, t=10, now=9
    ),
    scores("profile without profiling consent", (g("g1", 1, *ACME),), ReasonCode.MISSING_PURPOSE),
    scores(
        "profiling withdrawn since",
        (g("g1", 1, *ACME), g("g2", 1, "profiling"), w("w2", 7, "profiling")),
        ReasonCode.MISSING_PURPOSE,
    ),
    scores(
        "profiling for the partner is not first-party profiling",
        (g("g1", 1, *ACME), g("g2", 1, "profiling", "acme-corp")),
        ReasonCode.MISSING_PURPOSE,
    ),
    Case(
        "gpc on a partner sink",
        "partner.acme-corp.browsing",
        (g("g1", 1, *ACME),),
        ReasonCode.OPT_OUT_SIGNAL,
        signals=GPC,
    ),
    Case(
        "sink of another source",
        "analytics",
        (g("g1", 1),),
        ReasonCode.POLICY_ERROR,
        source="scores",
    ),
]


@pytest.mark.parametrize("case", TABLE, ids=[case.name for case in TABLE])
def test_reason_table(case: Case) -> None:
    e = event(
        at(case.t),
        source=case.source,
        signals=case.signals,
        subject=case.subject,
        event_id=case.event_id,
    )
    decision = decide(e, timeline(*case.changes), SINKS[case.sink], at(case.now), DEFAULTS)
    assert decision.reason is case.reason, decision.detail
    assert decision.allowed is (case.reason is ReasonCode.ALLOWED)
    assert decision.change_id == case.change_id
    assert (decision.evidence is not None) is decision.allowed
    if case.reason is ReasonCode.INVALID_EVENT:
        assert decision.detail


def test_every_reason_code_is_covered() -> None:
    assert {case.reason for case in TABLE} | ROUTER_ONLY == set(ReasonCode)


def test_missing_event_time_is_invalid() -> None:
    decision = decide(event(None), timeline(g("g1", 1)), SINKS["analytics"], at(5), DEFAULTS)
    assert decision.reason is ReasonCode.INVALID_EVENT
    assert decision.detail == "missing or unreadable event time"


def test_decision_constructors_keep_allow_and_deny_apart() -> None:
    with pytest.raises(ValueError, match="deny reason"):
        Decision.deny(ReasonCode.ALLOWED)


# --- properties ----------------------------------------------------------------------------

SIGNALS = st.sampled_from([frozenset(), frozenset({"gpc"})])
DECOYS: list[tuple[str, str | None]] = [("analytics", None), ("partner_sharing", "beta-inc")]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[ConsentChange], Sink, datetime, datetime]:
    """A sink, changes mostly about the grants it needs, an event time, and a later ``now``
    (sometimes a little earlier: clock skew; sometimes much: invalid)."""
    sink = draw(st.sampled_from(POLICY.sinks))
    keys = [sink.grant_key, ("profiling", None), draw(st.sampled_from(DECOYS))]
    changes = draw(change_sets(min_size=1, max_size=8, keys=keys))
    granted = [c.effective_time for c in changes if c.grant_key == sink.grant_key]
    near_own_change = bool(granted) and draw(st.booleans())
    if near_own_change:  # close to a change of the sink's own grant
        t = draw(st.sampled_from(granted)) + timedelta(seconds=30 * draw(st.integers(0, 6)))
    else:
        t = draw(times())
    now = t + timedelta(seconds=30 * draw(st.integers(-3, 90)))
    return changes, sink, t, now


def expected_allowed(
    changes: Sequence[ConsentChange],
    sink: Sink,
    t: datetime,
    now: datetime,
    signals: frozenset[str],
) -> str | None:
    """Id of the grant the definition would route on, or None (deny)."""
    if not changes or t > now + DEFAULTS.clock_skew or erased_before(changes, t):
        return None
    keys = [sink.grant_key] + [(p, None) for p in sink.extra_purposes]
    if not all(reference_continuous(changes, key, t, now) for key in keys):
        return None
    if signals & set(sink.opt_out_signals):
        return None
    return reference_granted(changes, sink.grant_key, t)


@MANY
@given(scenarios(), SIGNALS)
def test_allowed_exactly_when_the_definition_allows(
    scenario: tuple[list[ConsentChange], Sink, datetime, datetime], signals: frozenset[str]
) -> None:
    """The safety property, checked on the same examples in three ways: missing, withdrawn,
    expired or erased consent never allows; an allow always rests on a grant that covers
    both the event time and now; and decide allows exactly what the definition allows."""
    changes, sink, t, now = scenario
    tl = timeline(*changes)
    decision = decide(event(t, source=sink.source, signals=signals), tl, sink, now, DEFAULTS)
    assert decision.reason not in ROUTER_ONLY

    not_in_force_now = reference_granted(changes, sink.grant_key, now) is None
    not_granted_then = reference_granted(changes, sink.grant_key, t) is None
    erased = tl is not None and (tl.erased or erased_before(changes, t))
    if tl is None or not_in_force_now or not_granted_then or erased:
        assert not decision.allowed

    expected = expected_allowed(changes, sink, t, now, signals)
    assert decision.allowed is (expected is not None), decision
    if decision.allowed:
        assert decision.evidence is not None
        assert decision.evidence.change_id == expected == decision.change_id
        assert (decision.evidence.purpose, decision.evidence.recipient) == sink.grant_key
    elif decision.reason is ReasonCode.WITHDRAWN:
        withdrawal = next(c for c in changes if c.change_id == decision.change_id)
        assert withdrawal.action is ConsentAction.WITHDRAW
        assert t < withdrawal.effective_time <= now
    elif decision.reason is ReasonCode.EXPIRED:
        grant = next(c for c in changes if c.change_id == decision.change_id)
        assert grant.expires_at is not None and t < grant.expires_at <= now


@SOME
@given(change_sets(max_size=10), times(), st.sampled_from(["browsing", "scores"]), times())
def test_decide_all_agrees_with_decide(
    changes: list[ConsentChange], t: datetime, source: str, now: datetime
) -> None:
    tl = timeline(*changes)
    e = event(t, source=source)
    sinks = POLICY.sinks_for(source)
    together = decide_all(e, tl, sinks, now, DEFAULTS)
    assert together == [(sink, decide(e, tl, sink, now, DEFAULTS)) for sink in sinks]


def test_timeline_of_another_subject_is_no_record() -> None:
    other = change("g1", "GRANT", 1).model_copy(update={"subject_id": "someone-else"})
    decision = decide(event(at(5)), apply(None, other), SINKS["analytics"], at(6), DEFAULTS)
    assert decision.reason is ReasonCode.NO_CONSENT_RECORD
