"""SourceEvent.from_record: routing inputs from any decoded record, never raising."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from consentgate.models.events import BrowsingEvent, DerivedScore, EventType
from consentgate.policy import SourceEvent
from tests.unit.policy_fixtures import POLICY

pytestmark = pytest.mark.unit

BROWSING = POLICY.source("browsing")
SCORES = POLICY.source("scores")
WHEN = datetime(2025, 4, 1, 9, 30, tzinfo=UTC)
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def test_from_a_browsing_event_model() -> None:
    model = BrowsingEvent(
        event_id=ID, subject_id="s-1", event_time=WHEN, event_type=EventType.JOB_VIEW, gpc=True
    )
    e = SourceEvent.from_record(BROWSING, model.to_avro())
    assert (e.source, e.event_id, e.subject_id, e.event_time) == ("browsing", str(ID), "s-1", WHEN)
    assert e.signals == {"gpc"}
    assert e.fields["event_type"] == EventType.JOB_VIEW
    assert e.problem(WHEN, timedelta(0)) is None


def test_from_a_derived_score_model() -> None:
    model = DerivedScore(
        event_id=ID,
        subject_id="s-1",
        event_time=WHEN,
        score_type="offer_decline_probability",
        score=0.9,
        model_version="m1",
    )
    e = SourceEvent.from_record(SCORES, model.to_avro())
    assert (e.source, e.subject_id, e.signals) == ("scores", "s-1", frozenset())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (WHEN, WHEN),
        (WHEN.astimezone(timezone(timedelta(hours=9))), WHEN),
        (int(WHEN.timestamp() * 1000), WHEN),
        ("2025-04-01T18:30:00+09:00", WHEN),
        ("2025-04-01T09:30:00Z", WHEN),
        (datetime(2025, 4, 1, 9, 30), None),  # naive: zone unknown
        ("2025-04-01T09:30:00", None),
        ("yesterday", None),
        (True, None),
        (10**20, None),
        (None, None),
    ],
)
def test_event_time_forms(raw: Any, expected: datetime | None) -> None:
    e = SourceEvent.from_record(BROWSING, {"event_id": "e", "subject_id": "s", "event_time": raw})
    assert e.event_time == expected


@pytest.mark.parametrize(
    ("raw", "raised"),
    [
        (None, False),
        (False, False),
        (0, False),
        ("", False),
        ("0", False),
        ("false", False),
        (" No ", False),
        (True, True),
        (1, True),
        ("1", True),
        ("true", True),
        ("maybe", True),  # unknown counts as an opt-out: fail closed
    ],
)
def test_signal_values(raw: Any, raised: bool) -> None:
    e = SourceEvent.from_record(BROWSING, {"gpc": raw})
    assert ("gpc" in e.signals) is raised


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"subject_id": "s", "event_time": WHEN}, "missing event id"),
        ({"event_id": "e", "subject_id": "", "event_time": WHEN}, "missing subject id"),
        ({"event_id": "e", "subject_id": ["s"], "event_time": WHEN}, "missing subject id"),
        ({"event_id": "e", "subject_id": "s"}, "missing or unreadable event time"),
        ({"event_id": "e", "subject_id": "s", "event_time": WHEN + timedelta(seconds=61)}, "ahead"),
    ],
)
def test_problems(record: dict[str, Any], problem: str) -> None:
    e = SourceEvent.from_record(BROWSING, record)
    found = e.problem(WHEN, timedelta(seconds=60))
    assert found is not None and problem in found


def test_event_within_the_clock_skew_is_valid() -> None:
    record = {"event_id": "e", "subject_id": "s", "event_time": WHEN + timedelta(seconds=60)}
    assert SourceEvent.from_record(BROWSING, record).problem(WHEN, timedelta(seconds=60)) is None
