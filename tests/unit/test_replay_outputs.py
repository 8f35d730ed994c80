"""A replay's outputs from the router core's plans: per sink, moved to versioned topics,
its retractions, and the judge in both consent modes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from consentgate.consent.timeline import Timeline, apply
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod
from consentgate.ops.replay_history import Consent
from consentgate.ops.replay_judge import judge_record
from consentgate.ops.replay_outputs import (
    PlanSplitter,
    Written,
    moved,
    replay_retraction,
    withdrawn_retractions,
)
from consentgate.policy import Decision, ReasonCode
from consentgate.router.judge import Judge
from consentgate.router.outputs import HEADER, OutputTopics
from consentgate.router.partitioner import partition_for
from consentgate.router.plan import RawRecord, Router
from consentgate.serde import Serde
from tests.unit.policy_fixtures import KEYS, POLICY, SINKS

pytestmark = pytest.mark.unit

SERDE = Serde()
NOW = datetime.now(UTC)
T0 = NOW - timedelta(hours=2)
SUBJECT = "s1"
PARTITION = partition_for(SUBJECT.encode(), 3)


def change(action: str, purpose: str | None, recipient: str | None, at: datetime) -> ConsentChange:
    return ConsentChange(
        change_id=f"c-{uuid.uuid4().hex[:8]}",
        subject_id=SUBJECT,
        action=ConsentAction(action),
        purpose=purpose,
        recipient=recipient,
        effective_time=at,
        recorded_time=at,
        method=ConsentMethod.WEB_FORM,
    )


def granted(*changes: ConsentChange) -> Timeline:
    tl: Timeline | None = None
    for c in changes:
        tl = apply(tl, c)
    assert tl is not None
    return tl


def record(at: datetime, offset: int = 5) -> RawRecord:
    datum = {
        "event_id": uuid.uuid4(),
        "subject_id": SUBJECT,
        "event_time": at,
        "event_type": "JOB_VIEW",
        "job_id": "j-1",
        "company_id": "acme-corp",
    }
    value = SERDE.encode(datum, "BrowsingEvent")
    return RawRecord("events.browsing.raw.v1", PARTITION, offset, SUBJECT.encode(), value)


class Fixed:
    """A consent source: one timeline, judged now or at the event's time."""

    def __init__(self, timeline: Timeline | None, *, event_time: bool = False) -> None:
        self.timeline, self.event_time = timeline, event_time

    def consent(self, subject: str, event_time: datetime) -> Consent:
        return Consent(self.timeline)

    def judged_at(self, event_time: datetime, wall: datetime) -> datetime:
        return event_time if self.event_time else wall

    def catch_up(self) -> list[ConsentChange]:
        return []

    def close(self) -> None:
        return None


def test_a_plan_splits_into_each_sinks_record_and_provision() -> None:
    core = Router(POLICY, SERDE, KEYS)
    tl = granted(
        change("GRANT", "analytics", None, T0),
        change("GRANT", "partner_sharing", "acme-corp", T0),
        change("GRANT", "partner_sharing", "beta-inc", T0),
    )
    plan, _, _ = judge_record(Judge(core, 3), Fixed(tl), record(NOW - timedelta(minutes=1)))
    parts = PlanSplitter(POLICY, OutputTopics(), SERDE).split(plan, NOW.date())
    assert set(parts.records) == {
        "analytics",
        "site_counts",
        "partner.acme-corp.browsing",
        "partner.beta-inc.browsing",
    }
    assert set(parts.provisions) == {"partner.acme-corp.browsing", "partner.beta-inc.browsing"}
    for sink, provision in parts.provisions.items():
        assert SERDE.decode(provision.value).value["sink"] == sink
    # without the day it is judged on, the provisions are read: the same answer
    assert PlanSplitter(POLICY, OutputTopics(), SERDE).split(plan).provisions == parts.provisions
    assert parts.decision is not None and not parts.dead_letters
    versioned = moved(parts.records["analytics"], {"events.browsing.analytics.v1": "a.v1.x"})
    assert versioned.topic == "a.v1.x" and versioned.value == parts.records["analytics"].value


def test_event_time_judges_on_then_and_now_on_now() -> None:
    tl = granted(
        change("GRANT", "analytics", None, T0),
        change("WITHDRAW", "analytics", None, T0 + timedelta(hours=1)),
    )
    rec = record(T0 + timedelta(minutes=30))  # granted then, withdrawn since
    core = Router(POLICY, SERDE, KEYS)
    now_plan, _, _ = judge_record(Judge(core, 3), Fixed(tl), rec)
    then_plan, _, then = judge_record(Judge(core, 3), Fixed(tl, event_time=True), rec)
    now = dict((s.name, d) for s, d in now_plan.decisions)
    assert then == SERDE.decode(rec.value).value["event_time"]
    assert now["analytics"].reason is ReasonCode.WITHDRAWN
    assert dict((s.name, d) for s, d in then_plan.decisions)["analytics"].allowed
    parts = PlanSplitter(POLICY, OutputTopics(), SERDE).split(then_plan, then.date())
    evidence = SERDE.decode(parts.records["analytics"].value).value["evidence"]
    assert evidence["decided_at"] == SERDE.decode(rec.value).value["event_time"]  # judged then


def test_a_misrouted_event_is_denied_and_dead_lettered_as_by_the_router() -> None:
    core = Router(POLICY, SERDE, KEYS)
    tl = granted(change("GRANT", "analytics", None, T0))
    rec = record(NOW - timedelta(minutes=1))
    wrong = RawRecord(rec.topic, (PARTITION + 1) % 3, 1, rec.key, rec.value)
    plan, _, _ = judge_record(Judge(core, 3), Fixed(tl), wrong)
    assert plan.dead_letter
    assert {d.reason for _, d in plan.decisions} == {ReasonCode.MISROUTED}


def test_a_replay_retraction_carries_the_routers_headers_and_why() -> None:
    sink = SINKS["partner.acme-corp.browsing"]
    decision = Decision.deny(ReasonCode.WITHDRAWN, change_id="c-9")
    out = replay_retraction(
        sink.topic, b"old-key", sink=sink, decision=decision, policy_version="v7", replay_id="r1"
    )
    assert out.value is None and out.key == b"old-key" and out.topic == sink.topic
    assert dict(out.headers) == {
        HEADER.RETRACTION: b"replay",
        HEADER.CONSENT_CHANGE: b"c-9",
        HEADER.PURPOSE: b"partner_sharing",
        HEADER.POLICY_VERSION: b"v7",
        "cg-reason": b"withdrawn",
        "cg-replay-id": b"r1",
    }


def test_a_withdrawal_during_the_run_retracts_only_where_the_replay_wrote() -> None:
    sinks = tuple(POLICY.sinks_for("browsing"))
    written = Written(sinks)
    written.add(SUBJECT, "partner.acme-corp.browsing")
    written.add(SUBJECT, "analytics")
    withdraw = change("WITHDRAW", "partner_sharing", "acme-corp", NOW)
    (out,) = withdrawn_retractions(POLICY, [withdraw], KEYS, written)
    assert out.topic == "partner.acme-corp.browsing.v1"
    assert out.key == KEYS.pseudonym("acme-corp", SUBJECT).encode()
    assert dict(out.headers)[HEADER.RETRACTION] == b"withdrawn"
    erase = change("ERASE", None, None, NOW)
    assert {o.topic for o in withdrawn_retractions(POLICY, [erase], KEYS, written)} == {
        "partner.acme-corp.browsing.v1",
        "events.browsing.analytics.v1",
    }
    other = change("WITHDRAW", "partner_sharing", "beta-inc", NOW)
    assert withdrawn_retractions(POLICY, [other], KEYS, written) == []
    written.clear()
    assert withdrawn_retractions(POLICY, [erase], KEYS, written) == []
