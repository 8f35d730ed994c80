"""Which decoded consent changes the fold folds: one rule for the fold and the router.

The fold rejects (dead-letters) a change that is not keyed by its subject, sits on another
partition than its subject's, or is a GRANT effective before it was recorded. The router
must judge changes the same way: a change the fold rejects never reaches consent-state, so
a router waiting for the view to show it would wait forever.
"""

from __future__ import annotations

from dataclasses import dataclass

from consentgate.models.consent import ConsentAction, ConsentChange
from consentgate.router.partitioner import partition_for

__all__ = ["Rejected", "rejection"]


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a change is not folded: an error type (dead-letter field) and a reason."""

    error_type: str
    reason: str


def rejection(
    key: bytes | None, change: ConsentChange, partition: int, partitions: int
) -> Rejected | None:
    """None when the fold folds ``change`` read at ``partition`` under ``key``."""
    if key != change.subject_id.encode():
        return Rejected("KeyMismatch", "the record key is not the change's subject id")
    expected = partition_for(key, partitions)
    if expected != partition:
        return Rejected(
            "Misrouted",
            f"the subject's partition is {expected}, not {partition} "
            "(written without the murmur2 partitioner)",
        )
    if change.action is ConsentAction.GRANT and change.effective_time < change.recorded_time:
        return Rejected("BackdatedGrant", "a grant cannot take effect before it was recorded")
    return None
