"""Retractions: which sinks must be told to delete a subject's data after a consent change.

A WITHDRAW of (purpose, recipient) retracts from every sink whose grant is that key, and,
for a first-party withdrawal, from every sink that requires that purpose as an extra purpose
(withdrawing ``profiling`` retracts partner score sinks). An ERASE retracts from every sink.
A retraction is a record keyed by the subject's key in that sink with a null value and a
``cg-retraction`` header; sinks that drop subject ids hold nothing per subject and are
skipped (``policy check`` reports them as not retractable). Pure: no I/O.
"""

from __future__ import annotations

from consentgate.models.consent import ConsentAction, ConsentChange
from consentgate.policy import Policy, PseudonymKeys, Sink, retraction_key
from consentgate.router.outputs import HEADER, Output

__all__ = ["affected_sinks", "retractions"]


def affected_sinks(policy: Policy, change: ConsentChange) -> list[Sink]:
    """The sinks whose data about ``change.subject_id`` the change takes consent away from."""
    if change.action is ConsentAction.ERASE:
        return list(policy.sinks)
    if change.action is not ConsentAction.WITHDRAW or change.purpose is None:
        return []
    key = (change.purpose, change.recipient)
    return [
        sink
        for sink in policy.sinks
        if sink.grant_key == key
        or (change.recipient is None and change.purpose in sink.extra_purposes)
    ]


def retractions(policy: Policy, change: ConsentChange, keys: PseudonymKeys) -> list[Output]:
    """One null-valued record per affected, retractable sink."""
    reason = "erased" if change.action is ConsentAction.ERASE else "withdrawn"
    out = []
    for sink in affected_sinks(policy, change):
        key = retraction_key(sink, change.subject_id, keys)
        if key is None:
            continue
        headers = (
            (HEADER.RETRACTION, reason.encode()),
            (HEADER.CONSENT_CHANGE, change.change_id.encode()),
            (HEADER.PURPOSE, sink.purpose.encode()),
            (HEADER.POLICY_VERSION, policy.version.encode()),
        )
        out.append(Output(sink.topic, key.encode(), None, headers))
    return out
