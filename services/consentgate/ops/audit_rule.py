"""The audit's own decision rule, written from DESIGN §2, not from the router's code.

The audit must not share the router's decision code: a bug there would be invisible to a
verifier that reuses it. So this module re-states the rule over plain consent changes
(never the fold's timeline, never ``policy.decide``):

- the state of a grant key ``(purpose, recipient)`` at an instant ``x`` is set by the last
  change of that key (or ERASE) with ``effective_time <= x`` in the order
  ``(effective_time, recorded_time, change_id)``; a GRANT grants until its ``expires_at``
  (exclusive), a WITHDRAW or an ERASE ends it;
- a record of event time ``t`` decided at ``now`` is allowed into a sink iff the event is
  not further ahead of ``now`` than the clock skew, no known erasure is timed after ``t``,
  the sink's grant key was granted at ``t`` and stayed granted without a gap up to ``now``
  (a renewal at or before the expiry in force keeps it going), every extra purpose of the
  sink was granted first-party over the same span, and no opt-out signal of the event is
  one the sink honours.

Hindsight is excluded by ``known_at``: only changes recorded at or before it count, so a
record is never judged on a change nobody could have seen when it was decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from consentgate.models.consent import ConsentAction, ConsentChange

__all__ = ["Judgement", "RuleChange", "SubjectRule"]

GrantKey = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class RuleChange:
    """One consent change as the audit needs it; ``known`` is when it was first visible."""

    change_id: str
    action: ConsentAction
    purpose: str | None
    recipient: str | None
    effective: datetime
    expires: datetime | None
    known: datetime

    @classmethod
    def of(cls, change: ConsentChange, appended: datetime | None = None) -> RuleChange:
        known = change.recorded_time if appended is None else max(change.recorded_time, appended)
        return cls(
            change.change_id,
            change.action,
            change.purpose,
            change.recipient,
            change.effective_time,
            change.expires_at,
            known,
        )

    @classmethod
    def from_datum(cls, datum: Mapping[str, Any], appended: datetime | None = None) -> RuleChange:
        """From a decoded ``ConsentChange`` Avro datum (no model validation: a reading of the
        log that is ten times faster; the consent service validated each change on write)."""
        recorded: datetime = datum["recorded_time"]
        known = recorded if appended is None else max(recorded, appended)
        return cls(
            str(datum["change_id"]),
            ConsentAction(datum["action"]),
            datum.get("purpose"),
            datum.get("recipient"),
            datum["effective_time"],
            datum.get("expires_at"),
            known,
        )

    @property
    def order(self) -> tuple[datetime, datetime, str]:
        return (self.effective, self.known, self.change_id)

    def touches(self, key: GrantKey) -> bool:
        return self.action is ConsentAction.ERASE or (self.purpose, self.recipient) == key


@dataclass(frozen=True, slots=True)
class Judgement:
    """The audit rule's verdict: allowed, or the reason it is not; the grant in force at t."""

    allowed: bool
    reason: str
    grant_id: str | None = None


_ALLOW = "allowed"


class SubjectRule:
    """Every consent change of one subject, and the rule over them."""

    def __init__(self, changes: Iterable[RuleChange] = ()) -> None:
        self._by_id: dict[str, RuleChange] = {}
        for change in changes:
            self.add(change)
        self._sorted: list[RuleChange] | None = None

    def add(self, change: RuleChange) -> None:
        """Add a change (a repeated change id keeps its first, earliest-known copy)."""
        if change.change_id not in self._by_id:
            self._by_id[change.change_id] = change
            self._sorted = None

    @property
    def changes(self) -> list[RuleChange]:
        if self._sorted is None:
            self._sorted = sorted(self._by_id.values(), key=lambda c: c.order)
        return self._sorted

    def judge(
        self,
        *,
        event_time: datetime,
        now: datetime,
        known_at: datetime,
        key: GrantKey,
        extra_purposes: Iterable[str] = (),
        signals: Iterable[str] = (),
        opt_out_signals: Iterable[str] = (),
        clock_skew: timedelta = timedelta(seconds=30),
    ) -> Judgement:
        """The verdict for an event of time ``event_time`` into a sink of grant ``key``,
        decided at ``now``, on the changes known at ``known_at``."""
        if event_time > now + clock_skew:
            return Judgement(False, "invalid_event")
        seen = [c for c in self.changes if c.known <= known_at]
        lo, hi = min(event_time, now), max(event_time, now)
        # an erasure known now wipes every event timed before it, even one effective later
        if any(c.action is ConsentAction.ERASE and event_time < c.effective for c in seen):
            return Judgement(False, "erased")
        held, grant = _held(seen, key, event_time, lo, hi)
        if held != _ALLOW:
            return Judgement(False, held)
        for extra in extra_purposes:
            extra_held, _ = _held(seen, (extra, None), event_time, lo, hi)
            if extra_held != _ALLOW:
                return Judgement(False, "missing_purpose")
        if set(signals) & set(opt_out_signals):
            return Judgement(False, "opt_out_signal")
        return Judgement(True, _ALLOW, grant)

    def ends_after(self, key: GrantKey, extras: Iterable[str], t: datetime) -> list[RuleChange]:
        """The WITHDRAW and ERASE changes effective after ``t`` that take away ``key`` (or
        one of the first-party ``extras``): each obliges a retraction of data timed ``t``."""
        keys = {key, *((e, None) for e in extras)}
        return [
            c
            for c in self.changes
            if c.effective > t
            and (
                c.action is ConsentAction.ERASE
                or (c.action is ConsentAction.WITHDRAW and (c.purpose, c.recipient) in keys)
            )
        ]


def _held(  # noqa: PLR0911 - one return per step of the rule
    seen: list[RuleChange], key: GrantKey, t: datetime, lo: datetime, hi: datetime
) -> tuple[str, str | None]:
    """Whether ``key`` was granted at ``t`` and without a gap over ``[lo, hi]``: ("allowed",
    the GRANT in force at t) or (the denial reason, None)."""
    mine = [c for c in seen if c.touches(key)]
    at_t = [c for c in mine if c.effective <= t]
    last = at_t[-1] if at_t else None
    if last is None or last.action is not ConsentAction.GRANT:
        return "not_granted_at_event_time", None
    if last.expires is not None and last.expires <= t:
        return "not_granted_at_event_time", None
    grant_id = last.change_id
    # the state at lo (<= t): the span from lo to t must be covered as well
    at_lo = [c for c in mine if c.effective <= lo]
    if lo < t and (not at_lo or at_lo[-1].action is not ConsentAction.GRANT):
        return "not_in_force", None
    first = at_lo[-1] if at_lo else last
    expiry = first.expires
    if expiry is not None and expiry <= lo:
        return "not_in_force", None
    for change in (c for c in mine if lo < c.effective <= hi):
        if expiry is not None and change.effective > expiry:
            return "expired", None
        if change.action is ConsentAction.GRANT:
            expiry = change.expires
        elif change.action is ConsentAction.ERASE:
            return "erased", None
        else:
            return "withdrawn", None
    if expiry is not None and expiry <= hi:
        return "expired", None
    return _ALLOW, grant_id
