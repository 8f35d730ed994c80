"""Grant intervals derived from a canonically ordered list of consent changes.

The state of a grant key ``(purpose, recipient)`` at an instant ``t`` is decided by the last
change for that key (or ERASE) with ``effective_time <= t`` in canonical order
``(effective_time, recorded_time, change_id)``: a GRANT grants until its ``expires_at``
(exclusive) if it has one; a WITHDRAW or an ERASE ends the grant. This module turns that
rule into maximal half-open intervals ``[start, end)``:

- a GRANT while the key is granted (or exactly when its expiry falls) *renews* it: same
  interval, the new grant's expiry replaces the old one (renewals may shorten or lengthen);
- a GRANT after a gap opens a new interval;
- the interval ends at a WITHDRAW / ERASE (reason WITHDRAWN / ERASED) or at the expiry in
  force (reason EXPIRED); an open interval has ``end = None``;
- empty intervals (granted and withdrawn at the same instant) are dropped.

Each interval keeps the evidence of every grant in it, so ``evidence_at(t)`` names the grant
that was in force at ``t``. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from consentgate.models.consent import ConsentAction, ConsentMethod, TimelineChange

__all__ = ["EndReason", "Evidence", "GrantIndex", "GrantInterval", "GrantKey", "build_intervals"]

GrantKey = tuple[str, str | None]
"""(purpose, recipient); recipient None = the first party."""


class EndReason(StrEnum):
    """Why a grant interval ended."""

    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    ERASED = "erased"


@dataclass(frozen=True, slots=True)
class Evidence:
    """The consent a decision relied on: the GRANT change in force at the relevant time."""

    change_id: str
    purpose: str
    recipient: str | None
    method: ConsentMethod
    notice_version: str | None
    effective_time: datetime

    @classmethod
    def of(cls, change: TimelineChange, key: GrantKey) -> Evidence:
        return cls(
            change_id=change.change_id,
            purpose=key[0],
            recipient=key[1],
            method=change.method,
            notice_version=change.notice_version,
            effective_time=change.effective_time,
        )


@dataclass(frozen=True, slots=True)
class GrantInterval:
    """A maximal stretch ``[start, end)`` during which one grant key was granted."""

    key: GrantKey
    start: datetime
    end: datetime | None
    end_reason: EndReason | None
    grants: tuple[Evidence, ...]
    ended_by: str | None = None
    """Id of the change that ended the interval (the WITHDRAW or ERASE; for an expiry, the
    last grant, whose ``expires_at`` it was); None while open."""

    def contains(self, t: datetime) -> bool:
        return self.start <= t and (self.end is None or t < self.end)

    def evidence_at(self, t: datetime) -> Evidence:
        """The grant in force at ``t`` (the latest one effective at or before it)."""
        for evidence in reversed(self.grants):
            if evidence.effective_time <= t:
                return evidence
        return self.grants[0]


GrantIndex = Mapping[GrantKey, tuple[GrantInterval, ...]]


@dataclass
class _Open:
    start: datetime
    expiry: datetime | None
    grants: list[Evidence] = field(default_factory=list)


class _Builder:
    """Walks changes in canonical order, keeping the open interval of each key."""

    def __init__(self) -> None:
        self.done: dict[GrantKey, list[GrantInterval]] = {}
        self.open: dict[GrantKey, _Open] = {}

    def grant(self, key: GrantKey, change: TimelineChange) -> None:
        current = self.open.get(key)
        when = change.effective_time
        if current is not None and current.expiry is not None and current.expiry < when:
            self._close(key, current.expiry, EndReason.EXPIRED, current.grants[-1].change_id)
            current = None
        if current is None:
            current = self.open[key] = _Open(start=when, expiry=None)
        current.expiry = change.expires_at
        current.grants.append(Evidence.of(change, key))

    def end(self, key: GrantKey, change: TimelineChange, reason: EndReason) -> None:
        """End the key's open interval at ``change``, or at its expiry if that came first."""
        current = self.open.get(key)
        if current is None:
            return
        when = change.effective_time
        if current.expiry is not None and current.expiry <= when:
            self._close(key, current.expiry, EndReason.EXPIRED, current.grants[-1].change_id)
        else:
            self._close(key, when, reason, change.change_id)

    def finish(self) -> dict[GrantKey, tuple[GrantInterval, ...]]:
        for key, current in list(self.open.items()):
            if current.expiry is None:
                self._close(key, None, None, None)
            else:
                self._close(key, current.expiry, EndReason.EXPIRED, current.grants[-1].change_id)
        return {key: tuple(intervals) for key, intervals in self.done.items()}

    def _close(
        self, key: GrantKey, end: datetime | None, reason: EndReason | None, by: str | None
    ) -> None:
        current = self.open.pop(key)
        if end is None or end > current.start:
            interval = GrantInterval(key, current.start, end, reason, tuple(current.grants), by)
            self.done.setdefault(key, []).append(interval)


def build_intervals(changes: Iterable[TimelineChange]) -> dict[GrantKey, tuple[GrantInterval, ...]]:
    """Grant intervals per key, in time order, from changes in canonical order."""
    builder = _Builder()
    for change in changes:
        key = change.grant_key
        if key is None:  # ERASE: ends every grant
            for open_key in list(builder.open):
                builder.end(open_key, change, EndReason.ERASED)
        elif change.action is ConsentAction.GRANT:
            builder.grant(key, change)
        else:
            builder.end(key, change, EndReason.WITHDRAWN)
    return builder.finish()
