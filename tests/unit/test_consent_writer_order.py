"""Changes written in the same millisecond apply in the order they were written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consentgate.consent.timeline import Timeline, apply
from consentgate.consent.writer import after_ties, new_change

pytestmark = pytest.mark.unit

T = datetime(2026, 11, 26, 12, 0, 0, 123000, tzinfo=UTC)


def _write(timeline: Timeline | None, *changes: object) -> Timeline | None:
    for change in changes:
        timeline = apply(timeline, after_ties(change, timeline))  # type: ignore[arg-type]
    return timeline


@pytest.mark.parametrize("attempt", range(50))  # change ids are random: try many
def test_grant_then_erase_in_one_millisecond_erases(attempt: int) -> None:
    timeline = _write(
        None,
        new_change("s", "GRANT", "analytics", at=T),
        new_change("s", "ERASE", at=T),
    )
    assert timeline is not None and timeline.erased


@pytest.mark.parametrize("attempt", range(50))
def test_grant_then_withdraw_in_one_millisecond_is_withdrawn(attempt: int) -> None:
    timeline = _write(
        None,
        new_change("s", "GRANT", "analytics", at=T),
        new_change("s", "WITHDRAW", "analytics", at=T),
    )
    assert timeline is not None
    assert timeline.in_force("analytics", None, T + timedelta(seconds=1)) is None


def test_a_tie_is_recorded_one_millisecond_later_and_nothing_else_changes() -> None:
    grant = new_change("s", "GRANT", "analytics", at=T)
    timeline = apply(None, grant)
    withdraw = new_change("s", "WITHDRAW", "analytics", at=T)
    moved = after_ties(withdraw, timeline)
    assert moved.recorded_time == T + timedelta(milliseconds=1)
    assert moved.effective_time == withdraw.effective_time
    assert moved.model_dump(exclude={"recorded_time"}) == withdraw.model_dump(
        exclude={"recorded_time"}
    )


def test_no_tie_no_change() -> None:
    timeline = apply(None, new_change("s", "GRANT", "analytics", at=T))
    later = new_change("s", "WITHDRAW", "analytics", at=T + timedelta(milliseconds=5))
    backdated = new_change("s", "WITHDRAW", "analytics", at=T - timedelta(days=1))
    assert after_ties(later, timeline) is later
    assert after_ties(backdated, timeline) is backdated  # effective time decides; kept as is
    assert after_ties(later, None) is later


def test_rewriting_the_same_change_is_still_idempotent() -> None:
    grant = new_change("s", "GRANT", "analytics", at=T)
    timeline = apply(None, grant)
    assert after_ties(grant, timeline) is grant
    assert apply(timeline, after_ties(grant, timeline)) == timeline
