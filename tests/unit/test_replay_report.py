"""The replay summary: per sink allowed, denied by reason, and the live diff."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from consentgate.consent.intervals import Evidence
from consentgate.models.consent import ConsentMethod
from consentgate.ops.replay_report import ReplayReport
from consentgate.policy import Decision, ReasonCode
from tests.unit.policy_fixtures import SINKS

pytestmark = pytest.mark.unit

NO = Decision.deny(ReasonCode.NO_CONSENT_RECORD)
EVIDENCE = Evidence(
    "c-1", "analytics", None, ConsentMethod.API, None, datetime(2026, 1, 1, tzinfo=UTC)
)


def test_counts_per_sink_and_reason() -> None:
    report = ReplayReport("r1", "dry-run", "now", "raw")
    allowed = ((SINKS["analytics"], Decision.allow(EVIDENCE)), (SINKS["site_counts"], NO))
    withdrawn = ((SINKS["analytics"], Decision.deny(ReasonCode.WITHDRAWN)),)
    none = ((SINKS["analytics"], NO),)
    for decisions in (allowed, allowed, withdrawn, none):
        report.count(decisions, {"analytics"})  # site_counts not selected
    for outcome in ("add", "unchanged", "retract", "none"):
        report.outcome("analytics", "a.v1", outcome)  # type: ignore[arg-type]
    report.tally("analytics", "a.v1").retraction_keys = 1
    report.events, report.seconds, report.pass_seconds = 4, 3.0, 2.0
    report.to_json()
    t = report.sinks["analytics"]
    assert (t.allowed, t.added, t.unchanged, t.retracted) == (2, 1, 1, 1)
    assert dict(t.denied) == {"withdrawn": 1, "no_consent_record": 1}
    assert "site_counts" not in report.sinks
    data = json.loads(json.dumps(report.to_json()))
    assert data["records_per_second"] == 2.0
    assert data["sinks"]["analytics"]["denied"] == {"no_consent_record": 1, "withdrawn": 1}
    text = report.render()
    assert "would add" in text and "would retract" in text
    assert "withdrawn" in text and "analytics" in text


def test_versioned_shows_no_live_columns() -> None:
    report = ReplayReport("r1", "versioned", "event-time", "raw", suffix="v1")
    report.outcome("analytics", "a.v1", "add")
    text = report.render()
    assert "into *.v1" in text and "unchanged" not in text
