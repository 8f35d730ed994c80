"""The write path's rules (pure): times, backdating, names, GPC keys, the fold core."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest

from consentgate.consent.fold import ERASED_BASE, PartitionFold, RawChange
from consentgate.consent.gpc import gpc_keys
from consentgate.consent.requests import (
    CHANGE_ID_PATTERN,
    ChangeRequest,
    MonotonicClock,
    Rejected,
    to_change,
)
from consentgate.consent.service import derived_id
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentTimeline
from consentgate.router.partitioner import partition_for
from consentgate.serde import Serde
from tests.unit.policy_fixtures import POLICY

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def req(**fields: object) -> ChangeRequest:
    return ChangeRequest.model_validate({"subject_id": "s1", **fields})


def test_recorded_time_is_the_services_and_effective_defaults_to_it() -> None:
    change = to_change(req(action="GRANT", purpose="analytics"), policy=POLICY, recorded_time=NOW)
    assert change.recorded_time == NOW and change.effective_time == NOW
    with pytest.raises(ValueError, match="recorded_time"):
        req(action="GRANT", purpose="analytics", recorded_time=NOW)


def test_a_grant_cannot_be_backdated_but_can_be_scheduled() -> None:
    with pytest.raises(Rejected, match="before it is recorded") as exc:
        to_change(
            req(action="GRANT", purpose="analytics", effective_time=NOW - timedelta(seconds=1)),
            policy=POLICY,
            recorded_time=NOW,
        )
    assert exc.value.path == "effective_time"
    later = NOW + timedelta(days=3)
    change = to_change(
        req(action="GRANT", purpose="analytics", effective_time=later),
        policy=POLICY,
        recorded_time=NOW,
    )
    assert change.effective_time == later
    with pytest.raises(Rejected, match="a year ahead"):
        to_change(
            req(action="GRANT", purpose="analytics", effective_time=NOW + timedelta(days=400)),
            policy=POLICY,
            recorded_time=NOW,
        )


def test_a_backdated_withdrawal_needs_the_operator_path_and_a_reason() -> None:
    past = NOW - timedelta(hours=2)
    request = req(action="WITHDRAW", purpose="analytics", effective_time=past)
    with pytest.raises(Rejected, match="operator path"):
        to_change(request, policy=POLICY, recorded_time=NOW)
    with pytest.raises(Rejected, match="backdate_reason"):
        to_change(request, policy=POLICY, recorded_time=NOW, operator=True)
    reasoned = req(
        action="WITHDRAW",
        purpose="analytics",
        effective_time=past,
        backdate_reason="ticket 42: withdrawn by phone",
    )
    change = to_change(reasoned, policy=POLICY, recorded_time=NOW, operator=True, actor="op")
    assert change.effective_time == past and change.actor == "op"


def test_backdating_stops_at_the_history_horizon() -> None:
    horizon = POLICY.defaults.history_horizon
    reason = "ticket 43: withdrawn by letter"
    inside = req(
        action="WITHDRAW",
        purpose="analytics",
        effective_time=NOW - horizon + timedelta(seconds=1),
        backdate_reason=reason,
    )
    assert to_change(inside, policy=POLICY, recorded_time=NOW, operator=True)
    beyond = req(
        action="WITHDRAW",
        purpose="analytics",
        effective_time=NOW - horizon - timedelta(seconds=1),
        backdate_reason=reason,
    )
    with pytest.raises(Rejected, match="history horizon") as exc:
        to_change(beyond, policy=POLICY, recorded_time=NOW, operator=True)
    assert exc.value.path == "effective_time"


def test_an_effective_time_without_a_utc_equivalent_is_rejected_not_a_crash() -> None:
    extreme = datetime.fromisoformat("0001-01-01T00:00:00+14:00")
    request = req(action="WITHDRAW", purpose="analytics", effective_time=extreme)
    with pytest.raises(Rejected, match="out of range") as exc:
        to_change(request, policy=POLICY, recorded_time=NOW, operator=True)
    assert exc.value.path == "effective_time"


def test_unknown_purposes_and_recipients_are_rejected() -> None:
    with pytest.raises(Rejected, match="unknown purpose") as exc:
        to_change(req(action="GRANT", purpose="marketing"), policy=POLICY, recorded_time=NOW)
    assert exc.value.path == "purpose"
    with pytest.raises(Rejected, match="unknown recipient"):
        to_change(
            req(action="GRANT", purpose="partner_sharing", recipient="nobody-inc"),
            policy=POLICY,
            recorded_time=NOW,
        )
    with pytest.raises(Rejected, match="needs a purpose"):
        to_change(req(action="WITHDRAW"), policy=POLICY, recorded_time=NOW)


def test_an_erasure_is_effective_when_recorded() -> None:
    with pytest.raises(Rejected, match="when it is recorded"):
        to_change(
            req(action="ERASE", effective_time=NOW + timedelta(minutes=1)),
            policy=POLICY,
            recorded_time=NOW,
        )


def test_the_clock_never_repeats_a_millisecond_for_a_subject() -> None:
    clock = MonotonicClock()
    stamps = [clock.now("s1") for _ in range(2000)]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert all(t.microsecond % 1000 == 0 for t in stamps)
    unnamed = [clock.now() for _ in range(10)]  # no subject: after everything handed out
    assert stamps[-1] < unnamed[0] and all(a < b for a, b in itertools.pairwise(unnamed))


def test_the_clock_keeps_each_subjects_order_without_running_ahead() -> None:
    clock = MonotonicClock()
    start = datetime.now(UTC)
    times: dict[str, list[datetime]] = {}
    for i in range(20_000):  # 5,000 subjects x 4 changes, as fast as it goes
        subject = f"s{i % 5000}"
        times.setdefault(subject, []).append(clock.now(subject))
    end = datetime.now(UTC)
    for mine in times.values():
        assert all(a < b for a, b in itertools.pairwise(mine))
        assert min(mine) >= start - timedelta(milliseconds=1)
    # strictly increasing across subjects, 20,000 calls would be >= 20 s ahead of the wall
    assert max(max(m) for m in times.values()) <= end + timedelta(milliseconds=10)
    # and a grant scheduled a second from now is not taken for a backdated one
    at = datetime.now(UTC) + timedelta(seconds=1)
    request = req(action="GRANT", purpose="analytics", effective_time=at)
    change = to_change(request, policy=POLICY, recorded_time=clock.now("s1"))
    assert change.effective_time > change.recorded_time


def test_gpc_withdraws_the_keys_of_the_sinks_that_honour_it() -> None:
    keys = gpc_keys(POLICY)
    honouring = {s.grant_key for s in POLICY.sinks if "gpc" in s.opt_out_signals}
    assert set(keys) >= honouring and keys
    assert len(keys) == len(set(keys))


# -- the fold's pure core ---------------------------------------------------------------


def _fold(
    serde: Serde, partitions: int = 1, base: dict[bytes, bytes] | None = None
) -> PartitionFold:
    stored = base or {}
    return PartitionFold(
        topic="consent.changes.v1",
        partition=0,
        partitions=partitions,
        serde=serde,
        horizon_days=400,
        base=stored.get,
    )


def _raw(serde: Serde, change: ConsentChange, offset: int = 0) -> RawChange:
    return RawChange(offset, change.subject_id.encode(), serde.encode(change))


def _change(action: str, purpose: str | None, at: datetime, cid: str) -> ConsentChange:
    return ConsentChange(
        change_id=cid,
        subject_id="s1",
        action=ConsentAction(action),
        purpose=purpose,
        effective_time=at,
        recorded_time=at,
        method="API",  # type: ignore[arg-type]
    )


def test_fold_writes_each_subject_once_per_batch_and_counts_duplicates() -> None:
    serde = Serde()
    fold = _fold(serde)
    g = _change("GRANT", "analytics", NOW, "g1")
    w = _change("WITHDRAW", "analytics", NOW + timedelta(hours=1), "w1")
    result = fold.fold([_raw(serde, g), _raw(serde, w, 1), _raw(serde, g, 2)], NOW)
    assert result.applied == 2 and result.duplicates == 1 and not result.rejected
    (value,) = result.writes.values()
    assert value is not None
    record = serde.decode_model(value, ConsentTimeline)
    assert [c.change_id for c in record.changes] == ["g1", "w1"]


def test_fold_rejects_what_cannot_be_a_change() -> None:
    serde = Serde()
    fold = _fold(serde, partitions=4)
    here = next(s for s in (f"s{i}" for i in range(50)) if partition_for(s.encode(), 4) == 0)
    away = next(s for s in (f"s{i}" for i in range(50)) if partition_for(s.encode(), 4) != 0)
    ok = _change("GRANT", "analytics", NOW, "ok").model_copy(update={"subject_id": here})
    misrouted = ok.model_copy(update={"subject_id": away, "change_id": "m"})
    backdated = ok.model_copy(update={"change_id": "b", "effective_time": NOW - timedelta(days=1)})
    reused = ok.model_copy(update={"action": ConsentAction.WITHDRAW})
    records = [
        RawChange(0, here.encode(), b"\x01nope"),
        RawChange(1, here.encode(), None),
        RawChange(2, b"other", serde.encode(ok)),
        RawChange(3, away.encode(), serde.encode(misrouted)),
        RawChange(4, here.encode(), serde.encode(backdated)),
        RawChange(5, here.encode(), serde.encode(ok)),
        RawChange(6, here.encode(), serde.encode(reused)),
    ]
    result = fold.fold(records, NOW)
    kinds = [r.error_type for r in result.rejected]
    assert kinds == [
        "DecodeError",
        "NullValue",
        "KeyMismatch",
        "Misrouted",
        "BackdatedGrant",
        "ValidationError",
    ]
    assert result.applied == 1 and list(result.writes) == [here.encode()]


def test_an_erasure_leaves_a_marker_until_the_horizon_passes_it() -> None:
    serde = Serde()
    fold = _fold(serde)
    result = fold.fold(
        [
            _raw(serde, _change("GRANT", "analytics", NOW, "g")),
            _raw(serde, _change("ERASE", None, NOW + timedelta(seconds=1), "e"), 1),
        ],
        NOW,
    )
    marker = result.writes[b"s1"]
    assert marker is not None
    record = serde.decode_model(marker, ConsentTimeline)
    assert record.erased_change_ids == ("g",)
    aged = _fold(serde, base={b"s1": serde.encode(record)})
    assert aged.sweep(NOW, [b"s1"]).writes == {b"s1": serde.encode(record)}  # within horizon
    later = NOW + timedelta(days=401)
    assert aged.sweep(later, [b"s1"]).writes == {b"s1": None}  # past it: a tombstone
    tombstoned = _fold(serde, base={b"s1": ERASED_BASE})
    assert tombstoned.timeline(b"s1") is None


@pytest.mark.parametrize(
    ("base", "purpose", "recipient"),
    [
        ("gpc-1", "analytics", None),
        ("c" * 128, "partner_sharing", "client-01"),
        ("c" * 128, "p" * 64, "r" * 64),
    ],
)
def test_signal_change_ids_are_valid_stable_and_distinct(
    base: str, purpose: str, recipient: str | None
) -> None:
    ids = {derived_id(base, purpose, recipient), derived_id(base, purpose, "other")}
    assert len(ids) == 2
    assert derived_id(base, purpose, recipient) in ids  # a retry derives the same id
    for change_id in ids:
        assert re.fullmatch(CHANGE_ID_PATTERN, change_id), change_id
