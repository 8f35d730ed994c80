"""Global Privacy Control as a recorded opt-out.

A GPC signal (the ``Sec-GPC: 1`` header, or a source field the policy names) is the
subject's opt-out of sale/sharing. The policy says which sinks honour it
(``opt_out_signals: [gpc]``); the grant keys those sinks need are what GPC withdraws. The
consent service records one WITHDRAW per such key (method GPC), so the opt-out holds for
every later event, not just the one that carried the signal.
"""

from __future__ import annotations

from consentgate.consent.intervals import GrantKey
from consentgate.policy.model import Policy

__all__ = ["GPC_SIGNAL", "gpc_keys"]

GPC_SIGNAL = "gpc"


def gpc_keys(policy: Policy) -> tuple[GrantKey, ...]:
    """The grant keys a GPC opt-out withdraws, in policy order, without duplicates."""
    keys: dict[GrantKey, None] = {}
    for sink in policy.sinks:
        if GPC_SIGNAL in sink.opt_out_signals:
            keys[sink.grant_key] = None
            for extra in sink.extra_purposes:
                keys[(extra, sink.recipient)] = None
    return tuple(keys)
