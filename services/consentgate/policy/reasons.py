"""What a routing decision says: allowed or not, why, and on which consent.

Reason codes are stable strings: they are written into decision records and counted in
metrics, so renaming one is a breaking change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from consentgate.consent.intervals import Evidence

__all__ = ["Decision", "ReasonCode"]


class ReasonCode(StrEnum):
    """Why an event was (not) routed to a sink."""

    ALLOWED = "allowed"
    INVALID_EVENT = "invalid_event"
    """Missing event id, subject or event time, or event time too far in the future: the
    router dead-letters the event (no sink gets it)."""
    NO_CONSENT_RECORD = "no_consent_record"
    """The subject has no consent timeline (unknown subject)."""
    ERASED = "erased"
    """The subject is erased, or the event predates the subject's erasure."""
    NOT_GRANTED_AT_EVENT_TIME = "not_granted_at_event_time"
    """The sink's grant (purpose, recipient) did not cover the event's time."""
    WITHDRAWN = "withdrawn"
    """The grant covered the event's time but was withdrawn since."""
    EXPIRED = "expired"
    """The grant covered the event's time but has expired since."""
    NOT_IN_FORCE = "not_in_force"
    """The grant covers the event's time (within clock skew ahead of now) but not now."""
    MISSING_PURPOSE = "missing_purpose"
    """An extra purpose the sink requires (e.g. profiling) is not granted at event time and now."""
    OPT_OUT_SIGNAL = "opt_out_signal"
    """The event carries an opt-out signal (e.g. GPC) that the sink's policy honours."""
    CONSENT_STATE_STALE = "consent_state_stale"
    """Set by the router: the consent view did not catch up with the event within the wait."""
    CONSENT_UNREADABLE = "consent_unreadable"
    """Set by the router: the subject's consent record could not be decoded."""
    MISROUTED = "misrouted"
    """Set by the router: the event sits on a partition other than its subject's (its key
    is not the subject, or its producer used another partitioner), so the consent view of
    that partition cannot judge it; it is dead-lettered with the expected partition too."""
    POLICY_ERROR = "policy_error"
    """The sink does not apply to the event's source, or the policy could not be evaluated."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one (event, sink).

    ``evidence`` is the grant an allowed event was routed on (None when denied).
    ``change_id`` is the consent change the decision rests on: the grant when allowed; the
    withdrawal, erasure or expired grant when denied for that; otherwise None.
    ``detail`` is a human-readable note for logs and dead letters (empty when allowed).
    """

    allowed: bool
    reason: ReasonCode
    evidence: Evidence | None = None
    change_id: str | None = None
    detail: str = ""

    @classmethod
    def allow(cls, evidence: Evidence) -> Decision:
        return cls(True, ReasonCode.ALLOWED, evidence, evidence.change_id)

    @classmethod
    def deny(
        cls, reason: ReasonCode, *, change_id: str | None = None, detail: str = ""
    ) -> Decision:
        if reason is ReasonCode.ALLOWED:
            raise ValueError("a denial needs a deny reason")
        return cls(False, reason, None, change_id, detail)
