"""The consent timeline: pure functions from consent changes to grant intervals and answers.

No I/O: the consent writer, the router, the replay tool and the audit all share it.
"""

from __future__ import annotations

from consentgate.consent.intervals import EndReason, Evidence, GrantInterval, GrantKey
from consentgate.consent.timeline import Timeline, apply, horizon_start, trim

__all__ = [
    "EndReason",
    "Evidence",
    "GrantInterval",
    "GrantKey",
    "Timeline",
    "apply",
    "horizon_start",
    "trim",
]
