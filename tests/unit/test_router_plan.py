"""The router's pure core: one raw record in, the records to write out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consentgate.consent.timeline import Timeline, apply
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod
from consentgate.policy import ReasonCode
from consentgate.router.outputs import HEADER
from consentgate.router.plan import RawRecord, Router
from consentgate.router.retract import retractions
from consentgate.serde import Serde
from tests.unit.policy_fixtures import KEYS, POLICY

pytestmark = pytest.mark.unit

SERDE = Serde()
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
T0 = NOW - timedelta(hours=1)


def change(action: str, purpose: str | None, recipient: str | None, at: datetime) -> ConsentChange:
    return ConsentChange(
        change_id=f"c-{uuid.uuid4().hex[:8]}",
        subject_id="s1",
        action=ConsentAction(action),
        purpose=purpose,
        recipient=recipient,
        effective_time=at,
        recorded_time=at,
        method=ConsentMethod.WEB_FORM,
        notice_version="2026-01",
    )


def timeline(*changes: ConsentChange) -> Timeline:
    tl: Timeline | None = None
    for c in changes:
        tl = apply(tl, c)
    assert tl is not None
    return tl


def browsing(**over: Any) -> bytes:
    datum = {
        "event_id": uuid.uuid4(),
        "subject_id": "s1",
        "event_time": NOW - timedelta(minutes=5),
        "event_type": "JOB_VIEW",
        "job_id": "j-1",
        "company_id": "acme-corp",
        "search_query": "secret query",
        "ip_address": "192.0.2.1",
        "gpc": False,
    }
    datum.update(over)
    return SERDE.encode(datum, "BrowsingEvent")


def raw(value: bytes | None, topic: str = "events.browsing.raw.v1", offset: int = 7) -> RawRecord:
    return RawRecord(topic, 2, offset, b"s1", value)


@pytest.fixture
def router() -> Router:
    return Router(POLICY, SERDE, KEYS)


def by_topic(plan_outputs: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for o in plan_outputs:
        out.setdefault(o.topic, []).append(o)
    return out


def test_consented_event_reaches_exactly_the_granted_sinks(router: Router) -> None:
    tl = timeline(
        change("GRANT", "analytics", None, T0),
        change("GRANT", "partner_sharing", "acme-corp", T0),
    )
    plan = router.route(raw(browsing()), tl, NOW)
    topics = by_topic(plan.outputs)
    assert set(topics) == {
        "events.browsing.analytics.v1",
        "events.browsing.counts.v1",
        "partner.acme-corp.browsing.v1",
        "consentgate.provisions.v1",
        "consentgate.decisions.v1",
    }
    (partner,) = topics["partner.acme-corp.browsing.v1"]
    value = SERDE.decode(partner.value).value
    assert value["search_query"] is None and value["ip_address"] is None  # not listed
    assert value["job_id"] == "j-1"
    assert value["subject_key"] == KEYS.pseudonym("acme-corp", "s1")
    assert partner.key == value["subject_key"].encode()
    # partner evidence is recipient-scoped (issue 12): no source coordinates, scoped event id
    assert value["evidence"]["source_offset"] is None
    assert value["evidence"]["source_partition"] is None
    (analytics,) = topics["events.browsing.analytics.v1"]
    assert SERDE.decode(analytics.value).value["evidence"]["source_offset"] == 7
    assert dict(partner.headers)[HEADER.PURPOSE] == b"partner_sharing"
    (decision,) = topics["consentgate.decisions.v1"]
    outcomes = {o["sink"]: o["reason"] for o in SERDE.decode(decision.value).value["outcomes"]}
    assert outcomes["partner.acme-corp.browsing"] == "allowed"
    assert outcomes["partner.beta-inc.browsing"] == "not_granted_at_event_time"
    (provision,) = topics["consentgate.provisions.v1"]
    prov = SERDE.decode(provision.value).value
    assert prov["recipient_id"] == "acme-corp" and prov["data_items"] == [
        "event_id",
        "event_time",
        "job_id",
    ]


def test_provision_is_written_once_per_subject_recipient_and_day(router: Router) -> None:
    tl = timeline(change("GRANT", "partner_sharing", "acme-corp", T0))
    first = by_topic(router.route(raw(browsing()), tl, NOW).outputs)
    second = by_topic(router.route(raw(browsing(), offset=8), tl, NOW).outputs)
    next_day = by_topic(
        router.route(raw(browsing(), offset=9), tl, NOW + timedelta(days=1)).outputs
    )
    assert len(first["consentgate.provisions.v1"]) == 1
    assert "consentgate.provisions.v1" not in second
    assert len(next_day["consentgate.provisions.v1"]) == 1


def test_no_consent_denies_everything_with_a_decision(router: Router) -> None:
    plan = router.route(raw(browsing()), None, NOW)
    assert [o.topic for o in plan.outputs] == ["consentgate.decisions.v1"]
    assert {d.reason for _, d in plan.decisions} == {ReasonCode.NO_CONSENT_RECORD}


def test_override_denies_everything_as_stale(router: Router) -> None:
    tl = timeline(change("GRANT", "analytics", None, T0))
    plan = router.route(raw(browsing()), tl, NOW, override=ReasonCode.CONSENT_STATE_STALE)
    assert [o.topic for o in plan.outputs] == ["consentgate.decisions.v1"]
    assert {d.reason for _, d in plan.decisions} == {ReasonCode.CONSENT_STATE_STALE}


@pytest.mark.parametrize(
    ("value", "stage"),
    [
        (b"", "decode"),
        (b"\xc3\x01garbage", "decode"),
        (None, "decode"),
        (b"not avro at all", "decode"),
    ],
)
def test_bad_bytes_become_dead_letters_with_raw_bytes(
    router: Router, value: bytes | None, stage: str
) -> None:
    plan = router.route(raw(value), None, NOW)
    assert plan.dead_letter
    (letter,) = plan.outputs
    assert letter.topic == "consentgate.dlq.v1"
    decoded = SERDE.decode(letter.value).value
    assert decoded["raw_value"] == value and decoded["stage"] == stage
    assert decoded["source_offset"] == 7 and decoded["reason"]


def test_wrong_record_type_and_future_events_are_dead_letters(router: Router) -> None:
    score = SERDE.encode(
        {
            "event_id": uuid.uuid4(),
            "subject_id": "s1",
            "event_time": NOW,
            "score_type": "x",
            "score": 0.5,
            "model_version": "m",
        },
        "DerivedScore",
    )
    wrong = router.route(raw(score), None, NOW)
    future = router.route(raw(browsing(event_time=NOW + timedelta(hours=1))), None, NOW)
    for plan, stage in ((wrong, "validate"), (future, "validate")):
        assert plan.dead_letter
        assert SERDE.decode(plan.outputs[0].value).value["stage"] == stage


def test_retractions_cover_exactly_the_affected_retractable_sinks() -> None:
    withdraw = change("WITHDRAW", "partner_sharing", "acme-corp", NOW)
    topics = {o.topic for o in retractions(POLICY, withdraw, KEYS)}
    assert topics == {"partner.acme-corp.browsing.v1", "partner.acme-corp.scores.v1"}
    profiling = change("WITHDRAW", "profiling", None, NOW)
    assert {o.topic for o in retractions(POLICY, profiling, KEYS)} == {
        "partner.acme-corp.scores.v1",
        "scores.offer_decline.internal.v1",
    }
    erase = change("ERASE", None, None, NOW)
    outs = retractions(POLICY, erase, KEYS)
    assert "events.browsing.counts.v1" not in {o.topic for o in outs}  # drops ids
    assert all(o.value is None for o in outs)
    assert all(dict(o.headers)[HEADER.RETRACTION] == b"erased" for o in outs)
    beta = next(o for o in outs if o.topic == "partner.beta-inc.browsing.v1")
    assert beta.key == b"s1"  # keep_if_named_recipient keeps the raw id
