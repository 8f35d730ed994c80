"""The report rows from records already read: consent history order, the state of each grant
at a given time, provision deduplication, decision summaries."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from consentgate.client.messages import Retraction
from consentgate.consent.timeline import Timeline, apply
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod
from consentgate.models.records import DecisionRecord, ProvisionRecord, SinkOutcome
from consentgate.ops.report_rows import (
    FoundRetraction,
    LoggedChange,
    change_section,
    decision_section,
    provision_section,
    recipient_totals,
    retraction_section,
    state_section,
    unique_provisions,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


def _change(
    cid: str,
    action: str,
    minute: int,
    purpose: str | None = "analytics",
    recipient: str | None = None,
    *,
    expires: int | None = None,
    recorded: int | None = None,
) -> ConsentChange:
    return ConsentChange(
        change_id=cid,
        subject_id="s1",
        action=ConsentAction(action),
        purpose=purpose,
        recipient=recipient,
        effective_time=T0 + timedelta(minutes=minute),
        recorded_time=T0 + timedelta(minutes=recorded if recorded is not None else minute),
        expires_at=None if expires is None else T0 + timedelta(minutes=expires),
        method=ConsentMethod.WEB_FORM,
        notice_version=f"notice-{cid}",
    )


def _timeline(*changes: ConsentChange) -> Timeline:
    timeline: Timeline | None = None
    for c in changes:
        timeline = apply(timeline, c)
    assert timeline is not None
    return timeline


def test_changes_are_listed_in_the_consent_model_order_not_log_order() -> None:
    late = _change("c-late", "GRANT", 1, recorded=30)  # effective earlier, logged later
    early = _change("c-early", "WITHDRAW", 5)
    section = change_section([LoggedChange(early, 0, 7), LoggedChange(late, 0, 9)], "history")
    assert [r["change_id"] for r in section.rows] == ["c-late", "c-early"]
    assert section.rows[0]["log_offset"] == 9
    assert section.rows[0]["notice_version"] == "notice-c-late"
    assert "log_offset" in section.extra and "log_offset" not in section.columns


def test_state_names_each_grant_status_at_the_time_asked() -> None:
    timeline = _timeline(
        _change("a1", "GRANT", 0, "analytics"),
        _change("p1", "GRANT", 0, "partner_sharing", "client-01"),
        _change("p2", "WITHDRAW", 10, "partner_sharing", "client-01"),
        _change("f1", "GRANT", 0, "profiling", expires=20),
        _change("s1", "GRANT", 60, "partner_sharing", "client-02"),
    )
    at = T0 + timedelta(minutes=30)
    rows = {(r["purpose"], r["recipient"]): r for r in state_section(timeline, at, "s").rows}
    assert rows[("analytics", None)]["status"] == "granted"
    assert rows[("analytics", None)]["change_id"] == "a1"
    assert rows[("analytics", None)]["until"] is None
    withdrawn = rows[("partner_sharing", "client-01")]
    assert (withdrawn["status"], withdrawn["change_id"]) == ("withdrawn", "p2")
    assert withdrawn["since"] == T0 + timedelta(minutes=10)
    assert withdrawn["notice_version"] == "notice-p2"
    assert rows[("profiling", None)]["status"] == "expired"
    assert rows[("profiling", None)]["since"] == T0 + timedelta(minutes=20)
    assert rows[("partner_sharing", "client-02")]["status"] == "scheduled"
    # earlier, the same timeline answers differently
    before = {(r["purpose"], r["recipient"]): r for r in state_section(timeline, T0, "s").rows}
    assert before[("profiling", None)]["status"] == "granted"
    assert before[("profiling", None)]["until"] == T0 + timedelta(minutes=20)
    assert before[("partner_sharing", "client-01")]["status"] == "granted"


def test_state_of_a_subject_without_a_record_is_empty() -> None:
    assert state_section(None, T0, "s").rows == []


def _provision(
    recipient: str, subject: str, day: date, sink: str = "p.browsing"
) -> ProvisionRecord:
    return ProvisionRecord(
        provision_id=ProvisionRecord.make_id(recipient, subject, sink, day),
        provision_date=day,
        recipient_id=recipient,
        recipient_name="Client K.K.",
        recipient_address="1-1 Example-cho",
        recipient_country="JP",
        subject_id=subject,
        subject_key="k" * 64,
        sink=sink,
        purpose="partner_sharing",
        data_items=["event_id", "job_id"],
        consent_change_id="c1",
        consent_confirmed_at=T0,
        first_event_id=uuid.uuid4(),
        policy_version="v1",
    )


def test_a_repeated_provision_id_is_one_provision() -> None:
    day = date(2025, 4, 1)
    a = _provision("client-01", "s2", day)
    again = a.model_copy(update={"first_event_id": uuid.uuid4()})  # a replay of the same day
    b = _provision("client-01", "s1", day + timedelta(days=1))
    c = _provision("client-01", "s1", day)
    records, repeats = unique_provisions([b, a, again, c])
    assert [(r.subject_id, r.provision_date) for r in records] == [
        ("s1", day),
        ("s2", day),
        ("s1", day + timedelta(days=1)),
    ]
    assert repeats == 1
    totals = recipient_totals(records, repeats)
    assert (totals["provisions"], totals["subjects"], totals["days"]) == (3, 2, 2)
    assert (totals["first_date"], totals["last_date"]) == (day, day + timedelta(days=1))
    section = provision_section(records, "p", by="recipient")
    assert section.columns[:3] == ("provision_date", "subject_id", "subject_key")
    assert section.rows[0]["data_items"] == ("event_id", "job_id")
    assert "recipient_address" in section.all_columns


def _decision(sink_outcomes: dict[str, str], minute: int) -> DecisionRecord:
    return DecisionRecord(
        event_id=uuid.uuid4(),
        source_topic="raw",
        source_partition=0,
        source_offset=minute,
        subject_id="s1",
        event_time=T0 + timedelta(minutes=minute),
        decided_at=T0 + timedelta(minutes=minute),
        policy_version="v1",
        outcomes=[
            SinkOutcome(sink=s, allowed=r == "allowed", reason=r) for s, r in sink_outcomes.items()
        ],
    )


def test_decisions_are_counted_per_sink_with_their_deny_reasons() -> None:
    records = [
        _decision({"analytics": "allowed", "partner": "allowed"}, 1),
        _decision({"analytics": "allowed", "partner": "withdrawn"}, 2),
        _decision({"analytics": "erased", "partner": "erased"}, 3),
        _decision({"analytics": "erased", "partner": "withdrawn"}, 4),
    ]
    section, totals = decision_section(records, "d")
    rows = {r["sink"]: r for r in section.rows}
    assert (rows["analytics"]["allowed"], rows["analytics"]["denied"]) == (2, 2)
    assert rows["partner"]["deny_reasons"] == "withdrawn=2, erased=1"
    assert rows["partner"]["first_event"] == T0 + timedelta(minutes=1)
    assert rows["partner"]["last_event"] == T0 + timedelta(minutes=4)
    assert totals == {"events_decided": 4, "events_allowed_into_a_sink": 2}


def test_retractions_are_ordered_by_time() -> None:
    def found(sink: str, minute: int) -> FoundRetraction:
        r = Retraction(
            "t", 0, minute, "k", "withdrawn", "c", "p", "v", T0 + timedelta(minutes=minute)
        )
        return FoundRetraction(sink, r, "key")

    section = retraction_section([found("b", 5), found("a", 2)], "r")
    assert [r["sink"] for r in section.rows] == ["a", "b"]
    assert section.short == frozenset({"key"})
