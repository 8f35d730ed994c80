"""What a running worker knows about itself: settings, metrics, assignment, readiness.

Written by the loop thread only; read by the web thread (``/readyz``, ``/metrics``) as plain
attribute reads, which are atomic in CPython.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from consentgate.models.consent import ConsentChange
from consentgate.policy import Policy
from consentgate.router.config import RouterConfig
from consentgate.router.metrics import RouterMetrics

__all__ = ["LoopState"]

log = logging.getLogger(__name__)


@dataclass
class LoopState:
    config: RouterConfig
    policy: Policy
    metrics: RouterMetrics
    partitions: int
    consent_wait: float
    assigned: set[int] = field(default_factory=set)
    loading: dict[int, tuple[int, int]] = field(default_factory=dict)  # p -> (position, end)
    assigned_once: bool = False
    revoked: bool = False
    fatal: str | None = None
    _unsettled_logged: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """Not ready before the first assignment, while any assigned consent partition is
        loading, between a revocation and the next assignment, or after a fatal error."""
        return self.assigned_once and not self.loading and not self.revoked and not self.fatal

    def set_ready_gauge(self) -> None:
        self.metrics.ready.set(1 if self.ready else 0)

    def note_loading(self, partition: int, position: int, end: int) -> None:
        if position >= end:
            self.loading.pop(partition, None)
        else:
            self.loading[partition] = (position, end)
        self.metrics.view_load_remaining.labels(str(partition)).set(max(0, end - position))

    def note_unsettled(self, change: ConsentChange, where: str) -> None:
        """A change waits for the view: say so once it has waited a second, then every 10 s
        (a change normally reaches the view within the fold's latency: no log for that)."""
        now = time.monotonic()
        first, last = self._unsettled_logged.setdefault(change.change_id, (now, 0.0))
        if now - first >= 1.0 and now - last >= 10.0:
            self._unsettled_logged[change.change_id] = (first, now)
            log.warning(
                "%s: %s %s of %s not in the consent view after %.0f s: the subject's events "
                "wait (consent_state_stale after the consent wait), retractions of this "
                "partition wait",
                where,
                change.action,
                change.change_id,
                change.subject_id,
                now - first,
            )
        if len(self._unsettled_logged) > 10_000:
            self._unsettled_logged.clear()

    def note_settled(self, change: ConsentChange) -> None:
        self._unsettled_logged.pop(change.change_id, None)
