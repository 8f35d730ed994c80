"""The consent service's write path, shared by the HTTP API, the CLI and the import: turn
requests into changes by the rules of :mod:`consentgate.consent.requests` and append them
to consent-changes (:class:`~consentgate.consent.changelog.ChangeLog`). That append is the
only write; consent-state follows by the fold.

Signals become changes here too: a GPC opt-out is one WITHDRAW per grant key the policy
maps GPC to (:func:`~consentgate.consent.gpc.gpc_keys`); a TCF TC string is one GRANT or
WITHDRAW per grant key its mapping covers (:mod:`consentgate.consent.tcf`). The changes of
one signal share the recorded time and a change-id prefix (the caller's idempotency key,
if any), so a retried signal is a retry of each of its changes.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence

from consentgate.consent import tcf
from consentgate.consent.changelog import ChangeLog, Receipt
from consentgate.consent.gpc import gpc_keys
from consentgate.consent.requests import ChangeRequest, MonotonicClock, Rejected, to_change
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod
from consentgate.policy.model import Policy

__all__ = ["ConsentService", "derived_id"]

log = logging.getLogger(__name__)


class ConsentService:
    def __init__(
        self, policy: Policy, changelog: ChangeLog, clock: MonotonicClock | None = None
    ) -> None:
        self.policy = policy
        self.changelog = changelog
        self.clock = clock or MonotonicClock()

    # -- requests -> changes (validated; nothing written) --------------------------------
    def change(
        self, request: ChangeRequest, *, actor: str | None = None, operator: bool = False
    ) -> ConsentChange:
        change = to_change(
            request,
            policy=self.policy,
            recorded_time=self.clock.now(request.subject_id),
            actor=actor,
            operator=operator,
        )
        if change.effective_time < change.recorded_time:
            log.warning(
                "operator %s backdated %s of %s to %s (recorded %s): %s",
                actor or "?",
                change.action.value,
                change.change_id,
                change.effective_time.isoformat(),
                change.recorded_time.isoformat(),
                request.backdate_reason,
            )
        return change

    def gpc(
        self, subject_id: str, *, change_id: str | None = None, actor: str | None = None
    ) -> list[ConsentChange]:
        """The withdrawals a GPC signal of ``subject_id`` records."""
        keys = gpc_keys(self.policy)
        if not keys:
            raise Rejected("the policy maps GPC to no sink (opt_out_signals: [gpc])", path="gpc")
        return self._signal(
            subject_id,
            [(key, False) for key in keys],
            ConsentMethod.GPC,
            change_id=change_id,
            actor=actor,
        )

    def tcf(
        self,
        subject_id: str,
        tc_string: str,
        *,
        change_id: str | None = None,
        actor: str | None = None,
    ) -> list[ConsentChange]:
        """The grants and withdrawals a TCF v2.2 TC string records (TcfError if invalid)."""
        states = tcf.grant_states(tcf.decode(tc_string), self.policy)
        if not states:
            raise Rejected("the TC string covers no grant key of the policy", path="tc_string")
        return self._signal(
            subject_id, states, ConsentMethod.TCF, change_id=change_id, actor=actor, tcf=tc_string
        )

    def _signal(
        self,
        subject_id: str,
        states: Sequence[tuple[tuple[str, str | None], bool]],
        method: ConsentMethod,
        *,
        change_id: str | None,
        actor: str | None,
        tcf: str | None = None,
    ) -> list[ConsentChange]:
        recorded = self.clock.now(subject_id)
        base = change_id or str(uuid.uuid4())
        changes = []
        for (purpose, recipient), granted in states:
            request = ChangeRequest(
                subject_id=subject_id,
                action=ConsentAction.GRANT if granted else ConsentAction.WITHDRAW,
                purpose=purpose,
                recipient=recipient,
                change_id=derived_id(base, purpose, recipient),
            )
            changes.append(
                to_change(
                    request,
                    policy=self.policy,
                    recorded_time=recorded,
                    actor=actor,
                    method=method,
                    tcf_string=tcf,
                )
            )
        return changes

    # -- the write -----------------------------------------------------------------------
    def record(self, changes: Sequence[ConsentChange], timeout: float = 35.0) -> list[Receipt]:
        """Append ``changes`` to consent-changes; returns once every one is acknowledged."""
        return self.changelog.append(changes, timeout)


MAX_CHANGE_ID = 128


def derived_id(base: str, purpose: str, recipient: str | None) -> str:
    """The change id of one key of a signal (GPC, TCF) with change id ``base``: the same for
    a retry; ``base`` replaced by its hash where the whole would exceed 128 characters."""
    tail = f".{purpose}.{recipient or '_'}"
    whole = base + tail
    if len(whole) <= MAX_CHANGE_ID:
        return whole
    hashed = "h" + hashlib.sha256(base.encode()).hexdigest()[:32] + tail
    if len(hashed) <= MAX_CHANGE_ID:
        return hashed
    return "h" + hashlib.sha256(whole.encode()).hexdigest()  # very long purpose and recipient
