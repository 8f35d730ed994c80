"""The consent timeline: examples of each rule, and properties against a naive reference."""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import datetime

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentgate.consent import EndReason, Timeline, apply, horizon_start, trim
from consentgate.errors import ValidationError
from consentgate.models.consent import (
    ConsentAction,
    ConsentChange,
    ConsentMethod,
    ConsentTimeline,
)
from consentgate.serde.repository import SchemaRepository
from tests.unit.consent_strategies import (
    MANY,
    PURPOSES,
    RECIPIENTS,
    SOME,
    SUBJECT,
    at,
    change_sets,
    reference_granted,
    times,
)

pytestmark = pytest.mark.unit

KEYS = [(p, r) for p in PURPOSES for r in RECIPIENTS]


def change(
    cid: str,
    action: str,
    minute: int,
    purpose: str | None = "analytics",
    recipient: str | None = None,
    *,
    expires: int | None = None,
    recorded: int | None = None,
) -> ConsentChange:
    erase = action == "ERASE"
    return ConsentChange(
        change_id=cid,
        subject_id=SUBJECT,
        action=ConsentAction(action),
        purpose=None if erase else purpose,
        recipient=None if erase else recipient,
        effective_time=at(minute),
        expires_at=None if expires is None else at(expires),
        recorded_time=at(minute if recorded is None else recorded),
        method=ConsentMethod.WEB_FORM,
        notice_version="2025-04",
    )


def fold(changes: Iterable[ConsentChange], timeline: Timeline | None = None) -> Timeline | None:
    for c in changes:
        timeline = apply(timeline, c)
    return timeline


def build(*changes: ConsentChange) -> Timeline:
    timeline = fold(changes)
    assert timeline is not None
    return timeline


def granted_id(timeline: Timeline, key: tuple[str, str | None], t: datetime) -> str | None:
    evidence = timeline.granted_at(key[0], key[1], t)
    return None if evidence is None else evidence.change_id


# --- examples ------------------------------------------------------------------------------


def test_grant_withdraw_regrant_gives_two_intervals_with_evidence() -> None:
    tl = build(change("g1", "GRANT", 1), change("w1", "WITHDRAW", 5), change("g2", "GRANT", 8))
    first, second = tl.intervals("analytics", None)
    assert (first.start, first.end, first.end_reason, first.ended_by) == (
        at(1),
        at(5),
        EndReason.WITHDRAWN,
        "w1",
    )
    assert (second.start, second.end, second.end_reason) == (at(8), None, None)
    assert granted_id(tl, ("analytics", None), at(3)) == "g1"
    assert granted_id(tl, ("analytics", None), at(6)) is None
    assert tl.in_force("analytics", None, at(9)) is not None
    evidence = tl.granted_at("analytics", None, at(3))
    assert evidence is not None
    assert (evidence.method, evidence.notice_version, evidence.effective_time) == (
        "WEB_FORM",
        "2025-04",
        at(1),
    )


def test_grants_are_per_purpose_and_recipient() -> None:
    tl = build(change("g1", "GRANT", 1, "partner_sharing", "acme-corp"))
    assert tl.granted_at("partner_sharing", "acme-corp", at(2)) is not None
    assert tl.granted_at("partner_sharing", None, at(2)) is None
    assert tl.granted_at("partner_sharing", "beta-inc", at(2)) is None
    assert tl.granted_at("analytics", "acme-corp", at(2)) is None


def test_expiry_and_renewal() -> None:
    tl = build(change("g1", "GRANT", 1, expires=10))
    assert tl.in_force("analytics", None, at(9)) is not None
    assert tl.in_force("analytics", None, at(10)) is None  # expiry is exclusive
    renewed = apply(tl, change("g2", "GRANT", 10, expires=20))  # renewed exactly at expiry
    (interval,) = renewed.intervals("analytics", None)
    assert (interval.start, interval.end, interval.end_reason) == (at(1), at(20), "expired")
    assert granted_id(renewed, ("analytics", None), at(12)) == "g2"
    shortened = apply(tl, change("g3", "GRANT", 5, expires=7))  # a renewal may shorten
    assert shortened.in_force("analytics", None, at(8)) is None


def test_grant_and_withdraw_at_the_same_instant_orders_by_recorded_time() -> None:
    tl = build(change("w1", "WITHDRAW", 5, recorded=6), change("g1", "GRANT", 5, recorded=5))
    assert tl.intervals("analytics", None) == ()  # the empty interval is dropped
    tl = build(change("w1", "WITHDRAW", 5, recorded=5), change("g1", "GRANT", 5, recorded=6))
    assert granted_id(tl, ("analytics", None), at(5)) == "g1"


def test_erase_wipes_history_and_denies_until_a_later_grant() -> None:
    tl = build(change("g1", "GRANT", 1), change("g2", "GRANT", 2, "profiling"))
    erased = apply(tl, change("e1", "ERASE", 10))
    assert erased.erased and erased.erased_at == at(10)
    assert [c.change_id for c in erased.record.changes] == ["e1"]
    assert erased.record.erased_change_ids == ("g1", "g2")
    assert erased.granted_at("analytics", None, at(5)) is None
    assert apply(erased, change("g1", "GRANT", 1)) is erased  # re-delivery: no-op
    late = apply(erased, change("g0", "GRANT", 3))  # effective before the erase: wiped
    assert late.record.erased_change_ids == ("g0", "g1", "g2") and late.erased
    back = apply(erased, change("g9", "GRANT", 20))
    assert not back.erased and back.erased_at == at(10)
    assert back.in_force("analytics", None, at(21)) is not None
    assert back.granted_at("analytics", None, at(15)) is None


def test_version_and_updated_at() -> None:
    tl = build(change("g1", "GRANT", 1, recorded=30), change("w1", "WITHDRAW", 5, recorded=6))
    assert tl.version == 2
    assert tl.record.updated_at == at(30)  # greatest recorded_time, not arrival order
    assert apply(tl, change("g1", "GRANT", 1, recorded=30)) is tl


def test_apply_refuses_another_subject_and_a_reused_id() -> None:
    tl = build(change("g1", "GRANT", 1))
    other = change("g2", "GRANT", 1).model_copy(update={"subject_id": "someone-else"})
    with pytest.raises(ValidationError, match="another subject"):
        apply(tl, other)
    with pytest.raises(ValidationError, match="reused"):
        apply(tl, change("g1", "WITHDRAW", 2))


def test_a_retry_with_other_times_is_the_same_change() -> None:
    """The service stamps each attempt anew: a retry (same id, same intent) is a no-op."""
    tl = build(change("g1", "GRANT", 1, recorded=1))
    assert apply(tl, change("g1", "GRANT", 2, recorded=3)) is tl


def test_trim_drops_ended_intervals_but_keeps_the_current_state() -> None:
    tl = build(
        change("g1", "GRANT", 1),
        change("w1", "WITHDRAW", 5),
        change("g2", "GRANT", 8),  # still in force: must survive any trim
        change("g3", "GRANT", 2, "profiling", expires=4),
    )
    trimmed = trim(tl, at(30))
    assert [c.change_id for c in trimmed.record.changes] == ["g3", "g2"]
    assert trimmed.intervals("profiling", None) == ()  # ended before the horizon: hidden
    assert trimmed.in_force("analytics", None, at(40)) is not None
    assert trimmed.record.trimmed_before == at(30)
    assert trim(trimmed, at(20)) is trimmed  # never un-trims
    assert trimmed.version == tl.version
    # A late withdrawal effective before the horizon still ends the grant ...
    assert apply(trimmed, change("w2", "WITHDRAW", 20)).in_force("analytics", None, at(40)) is None
    # ... and a late change older than what the horizon kept is a no-op.
    assert apply(trimmed, change("g0", "GRANT", 3)) is trimmed


def test_horizon_start() -> None:
    assert horizon_start(at(0), 1) == at(-24 * 60)


def test_record_round_trips_through_avro() -> None:
    tl = trim(
        build(
            change("g1", "GRANT", 1, expires=9),
            change("g2", "GRANT", 2, "partner_sharing", "acme-corp"),
            change("e1", "ERASE", 3),
            change("g3", "GRANT", 4, "profiling"),
        ),
        at(2),
    )
    entry = SchemaRepository.load().current("dev.consentgate.v1.ConsentTimeline")
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, entry.parsed, tl.record.to_avro())
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, entry.parsed, entry.parsed)
    assert Timeline(ConsentTimeline.from_avro(decoded)) == tl


# --- properties ----------------------------------------------------------------------------


@MANY
@given(change_sets(), st.lists(times(), min_size=1, max_size=8))
def test_answers_match_the_definition(changes: list[ConsentChange], ts: list[datetime]) -> None:
    tl = fold(changes)
    for key in KEYS:
        for t in ts:
            expected = reference_granted(changes, key, t)
            assert (granted_id(tl, key, t) if tl else None) == expected


@MANY
@given(st.data())
def test_independent_of_arrival_order_and_idempotent_by_change_id(data: st.DataObject) -> None:
    changes = data.draw(change_sets(min_size=1))
    tl = fold(changes)
    other = fold(data.draw(st.permutations(changes)))
    assert tl is not None and other is not None
    assert tl.record == other.record  # version and updated_at included
    assert tl.version == len(changes)
    for again in data.draw(st.lists(st.sampled_from(changes), max_size=4)):
        assert apply(tl, again) is tl


@SOME
@given(change_sets(min_size=1), times(), st.lists(times(), min_size=1, max_size=8))
def test_trimming_keeps_every_answer_within_the_horizon(
    changes: list[ConsentChange], horizon: datetime, ts: list[datetime]
) -> None:
    tl = fold(changes)
    assert tl is not None
    trimmed = trim(tl, horizon)
    assert len(trimmed.record.changes) <= len(tl.record.changes)
    assert (trimmed.erased, trimmed.erased_at) == (tl.erased, tl.erased_at)
    within = sorted(t for t in [*ts, horizon] if t >= horizon)
    for key in KEYS:
        for t in within:
            assert granted_id(trimmed, key, t) == granted_id(tl, key, t)
            for now in within:
                a, b = tl.interval_at(*key, t), trimmed.interval_at(*key, t)
                assert (a is not None and a.contains(now)) == (b is not None and b.contains(now))


@SOME
@given(change_sets(min_size=1), change_sets(min_size=1), times())
def test_late_changes_after_a_trim_land_as_if_never_trimmed(
    early: list[ConsentChange], late: list[ConsentChange], horizon: datetime
) -> None:
    late = [c.model_copy(update={"change_id": "late-" + c.change_id}) for c in late]
    trimmed_first = fold(late, trim(build(*early), horizon))
    everything = trim(build(*early, *late), horizon)
    assert trimmed_first is not None
    assert trimmed_first.record.changes == everything.record.changes
    assert trimmed_first.erased_at == everything.erased_at
