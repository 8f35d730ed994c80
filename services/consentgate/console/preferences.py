"""A subject's preferences, from the subject report's records (pure): every grant key of the
policy with its state in consent-state, and whether a change the subject made is still
pending (in consent-changes, not yet in consent-state) or enforced.

A change is enforced once the subject's consent-state record retains it or wiped it (the
test :func:`consentgate.consent.state_reader.visible` uses); until then it is pending, and
the key shows the state the change asks for, marked pending.
"""

from __future__ import annotations

from dataclasses import dataclass

from consentgate.consent.state_reader import SubjectState, visible
from consentgate.models.consent import ConsentAction, ConsentChange
from consentgate.ops.report import SubjectRecords
from consentgate.ops.report_format import Cell
from consentgate.policy import Policy

__all__ = ["Preference", "grant_keys", "pending_changes", "preferences"]

GrantKey = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class Preference:
    purpose: str
    purpose_text: str
    recipient: str | None
    recipient_name: str | None
    granted: bool  # what consent-state says now
    status: str  # the state section's status ("granted", "withdrawn", ...) or "not granted"
    since: Cell
    pending: ConsentChange | None  # the latest change not in consent-state yet

    @property
    def wanted(self) -> bool:
        """Granted once the pending change (if any) is enforced."""
        if self.pending is None:
            return self.granted
        return self.pending.action is ConsentAction.GRANT


def grant_keys(policy: Policy) -> list[GrantKey]:
    """Every (purpose, recipient) a sink of the policy needs, in policy order."""
    keys: dict[GrantKey, None] = {}
    for sink in policy.sinks:
        keys[sink.grant_key] = None
        for extra in sink.extra_purposes:
            keys[(extra, sink.recipient)] = None
    return list(keys)


def pending_changes(records: SubjectRecords) -> list[ConsentChange]:
    """The subject's changes in consent-changes that consent-state does not show yet."""
    state = SubjectState(records.subject, 0, records.status, records.timeline)
    return [
        logged.change for logged in records.changes if not visible(state, [logged.change.change_id])
    ]


def preferences(
    policy: Policy, records: SubjectRecords, state_rows: list[dict[str, Cell]]
) -> list[Preference]:
    rows = {(str(r["purpose"]), r["recipient"]): r for r in state_rows}
    pending = sorted(pending_changes(records), key=lambda c: c.order_key)
    names = {r.id: r.name for r in policy.recipients}
    out = []
    for purpose, recipient in grant_keys(policy):
        row = rows.get((purpose, recipient))
        status = str(row["status"]) if row is not None else "not granted"
        mine = [
            c
            for c in pending
            if c.action is ConsentAction.ERASE
            or (c.purpose == purpose and c.recipient == recipient)
        ]
        out.append(
            Preference(
                purpose,
                policy.purposes.get(purpose, purpose),
                recipient,
                names.get(recipient) if recipient else None,
                status == "granted",
                status,
                row["since"] if row is not None else None,
                mine[-1] if mine else None,
            )
        )
    return out
