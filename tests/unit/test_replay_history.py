"""Event-time consent: the timeline known at an instant, and erasure winning over it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod
from consentgate.ops.replay_history import ConsentHistory, admit, event_time_consent
from consentgate.policy import ReasonCode
from consentgate.router.partitioner import partition_for

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


def change(
    action: str,
    purpose: str | None = "analytics",
    *,
    at: datetime,
    recorded: datetime | None = None,
    subject: str = "s1",
) -> ConsentChange:
    return ConsentChange(
        change_id=str(uuid.uuid4()),
        subject_id=subject,
        action=ConsentAction(action),
        purpose=purpose if action != "ERASE" else None,
        effective_time=at,
        recorded_time=recorded or at,
        method=ConsentMethod.API,
    )


def test_only_changes_recorded_by_then_are_known() -> None:
    history = ConsentHistory()
    grant = change("GRANT", at=T0)
    # a withdrawal effective at T0+1h but recorded only at T0+3h (backdated)
    late = change("WITHDRAW", at=T0 + timedelta(hours=1), recorded=T0 + timedelta(hours=3))
    for c in (late, grant):  # arrival order does not matter
        history.add(c)
    assert history.known_at("s1", T0 - timedelta(seconds=1)) is None
    before = history.known_at("s1", T0 + timedelta(hours=2))
    assert before is not None and before.in_force("analytics", None, T0 + timedelta(hours=2))
    after = history.known_at("s1", T0 + timedelta(hours=3))
    assert after is not None and not after.in_force("analytics", None, T0 + timedelta(hours=2))
    assert history.latest("s1") == after
    assert history.known_at("nobody", T0) is None


def test_an_erasure_known_now_wins_over_history() -> None:
    history = ConsentHistory()
    history.add(change("GRANT", at=T0))
    history.add(change("ERASE", None, at=T0 + timedelta(days=1)))
    t = T0 + timedelta(hours=1)  # granted then, erased later
    assert history.known_at("s1", t) is not None
    assert event_time_consent(history, "s1", t).override is ReasonCode.ERASED


def test_a_subject_back_after_erasure_is_judged_on_the_new_grant() -> None:
    history = ConsentHistory()
    history.add(change("ERASE", None, at=T0))
    history.add(change("GRANT", at=T0 + timedelta(days=1)))
    t = T0 + timedelta(days=2)
    consent = event_time_consent(history, "s1", t)
    assert consent.override is None
    assert consent.timeline is not None and consent.timeline.in_force("analytics", None, t)
    assert event_time_consent(history, "s1", T0 - timedelta(hours=1)).override is ReasonCode.ERASED


def test_what_the_fold_refuses_is_not_consent() -> None:
    c = change("GRANT", at=T0)
    key = b"s1"
    right = partition_for(key, 3)
    assert admit(c, key, right, 3) is None
    assert admit(c, b"other", right, 3) is not None
    assert admit(c, key, (right + 1) % 3, 3) is not None
    backdated = change("GRANT", at=T0, recorded=T0 + timedelta(minutes=1))
    assert "recorded" in (admit(backdated, key, right, 3) or "")
