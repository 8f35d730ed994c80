"""Hypothesis strategies for consent changes, and a naive reference of their meaning.

Times are drawn on a coarse grid (minutes after T0) from small pools of purposes and
recipients, so that collisions (same instant, same key, grant then withdraw) are common.
The reference answers "is (purpose, recipient) granted at t" straight from the definition
(the last change for the key, or ERASE, effective at or before t decides), with no intervals.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st

from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod

MANY = settings(max_examples=2000, deadline=None)
"""For the properties that carry the safety argument (never allow without consent)."""
SOME = settings(max_examples=1000, deadline=None)
"""For the others: keeps the unit tier well under a minute."""

T0 = datetime(2025, 4, 1, tzinfo=UTC)
SUBJECT = "student-0001"
PURPOSES = ("analytics", "partner_sharing", "profiling")
RECIPIENTS = (None, "acme-corp", "beta-inc")
GRID = 60  # minutes

Key = tuple[str, str | None]


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


Shape = tuple[ConsentAction, str | None, str | None]


@functools.cache
def _shapes(erase_weight: int, keys: tuple[Key, ...] | None = None) -> list[Shape]:
    keyed = keys if keys is not None else tuple((p, r) for p in PURPOSES for r in RECIPIENTS)
    grants = [_shape(ConsentAction.GRANT, key) for key in keyed] * 4
    withdrawals = [_shape(ConsentAction.WITHDRAW, key) for key in keyed] * 2
    erases = [_shape(ConsentAction.ERASE, None)] * erase_weight
    return grants + withdrawals + erases


def _shape(action: ConsentAction, key: Key | None) -> Shape:
    return (action, None, None) if key is None else (action, *key)


_NOTICES = (None, "2025-01", "2025-04")


def make_change(
    shape: Shape,
    effective: int,
    lasts: int,
    delay: int,
    *,
    index: int,
) -> ConsentChange:
    """Change ``c<index>`` of ``shape`` at minute ``effective`` (lasting ``lasts`` minutes
    if a GRANT and ``lasts`` > 0), recorded ``delay`` minutes later."""
    action, purpose, recipient = shape
    if action is not ConsentAction.GRANT:
        lasts = 0
    return ConsentChange(
        change_id=f"c{index:03d}",
        subject_id=SUBJECT,
        action=action,
        purpose=purpose,
        recipient=recipient,
        effective_time=at(effective),
        expires_at=at(effective + lasts) if lasts else None,
        recorded_time=at(effective + delay),
        notice_version=_NOTICES[index % 3],
        method=list(ConsentMethod)[index % 2],
    )


def change_sets(
    *,
    min_size: int = 0,
    max_size: int = 12,
    erase_weight: int = 1,
    keys: Sequence[Key] | None = None,
) -> st.SearchStrategy[list[ConsentChange]]:
    """Changes with distinct ids, in arbitrary order (only for ``keys`` if given).

    Each change is a flat tuple of small draws (cheap to generate, shrinks towards an early
    GRANT of the first key without expiry).
    """
    shapes = _shapes(erase_weight, tuple(keys) if keys is not None else None)
    parts = st.tuples(
        st.sampled_from(shapes),
        st.integers(0, GRID),
        st.sampled_from([0, 0, 1, 5, 10, 30]),
        st.integers(0, 3),
    )
    return st.lists(parts, min_size=min_size, max_size=max_size).map(
        lambda drawn: [make_change(*p, index=i) for i, p in enumerate(drawn)]
    )


def times() -> st.SearchStrategy[datetime]:
    """Instants on and between the grid points, a little past both ends."""
    return st.integers(-2 * 2, 2 * (GRID + GRID // 2 + 2)).map(
        lambda half: T0 + timedelta(seconds=30 * half)
    )


def surviving(changes: Sequence[ConsentChange]) -> list[ConsentChange]:
    """The changes an erasure leaves: the latest ERASE and everything ordered after it."""
    erases = [c for c in changes if c.action is ConsentAction.ERASE]
    if not erases:
        return list(changes)
    last = max(erases, key=lambda c: c.order_key)
    return [c for c in changes if c.order_key >= last.order_key]


def reference_granted(changes: Sequence[ConsentChange], key: Key, t: datetime) -> str | None:
    """Id of the GRANT in force for ``key`` at ``t`` by the definition, or None."""
    relevant = [
        c for c in surviving(changes) if c.effective_time <= t and c.grant_key in (key, None)
    ]
    if not relevant:
        return None
    last = max(relevant, key=lambda c: c.order_key)
    if last.action is not ConsentAction.GRANT:
        return None
    if last.expires_at is not None and t >= last.expires_at:
        return None
    return last.change_id


def reference_continuous(
    changes: Sequence[ConsentChange], key: Key, start: datetime, end: datetime
) -> bool:
    """Granted at every instant of [start, end] and never withdrawn in between (a withdrawal
    re-granted at the same instant still breaks it): checks every change point."""
    lo, hi = min(start, end), max(start, end)
    kept = surviving(changes)
    if any(
        c.action is ConsentAction.WITHDRAW and c.grant_key == key and lo < c.effective_time <= hi
        for c in kept
    ):
        return False
    points = {lo, hi}
    for c in kept:
        for moment in (c.effective_time, c.expires_at):
            if moment is not None and lo <= moment <= hi:
                points.add(moment)
    return all(reference_granted(changes, key, p) is not None for p in points)


def erased_before(changes: Sequence[ConsentChange], t: datetime) -> bool:
    """Whether t is before the latest ERASE (by canonical order) among ``changes``."""
    erases = [c for c in changes if c.action is ConsentAction.ERASE]
    return bool(erases) and t < max(erases, key=lambda c: c.order_key).effective_time
