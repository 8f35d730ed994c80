"""Prometheus metrics of the router, on a registry of its own (served at ``/metrics``).

Counters move when a transaction commits (what an aborted transaction did never happened);
gauges are set by the loop about once a second.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["RouterMetrics"]


class RouterMetrics:
    """Everything an operator needs to see whether consent is enforced and keeping up."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.events = Counter(
            "consentgate_events",
            "raw records and consent changes with a committed outcome",
            registry=r,
        )
        self.outcomes = Counter(
            "consentgate_sink_outcomes",
            "decisions per sink and reason (allowed or the deny reason)",
            ["sink", "reason"],
            registry=r,
        )
        self._outcomes: dict[tuple[str, str], Counter] = {}
        self.dead_letters = Counter(
            "consentgate_dead_letters", "records sent to the dead-letter topic", registry=r
        )
        self.retractions = Counter(
            "consentgate_retractions", "retraction records written", ["sink"], registry=r
        )
        self.commits = Counter(
            "consentgate_transactions_committed", "transactions committed", registry=r
        )
        self.commit_seconds = Histogram(
            "consentgate_commit_seconds",
            "time to commit a transaction (flush outputs, offsets, end the transaction)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.aborts = Counter(
            "consentgate_transactions_aborted", "transactions aborted", registry=r
        )
        self.shadow_checks = Counter(
            "consentgate_shadow_checks", "decisions re-checked without caches", registry=r
        )
        self.shadow_mismatches = Counter(
            "consentgate_shadow_mismatches",
            "cached and uncached decisions differed (the worker stops)",
            registry=r,
        )
        self.waiting = Gauge(
            "consentgate_gate_waiting_events",
            "events queued behind the time-correct gate (waiting for a fresh consent view)",
            registry=r,
        )
        self.unsettled = Gauge(
            "consentgate_unsettled_changes",
            "withdrawals/erasures read from consent.changes that the view does not show yet",
            registry=r,
        )
        self.consent_lag = Gauge(
            "consentgate_consent_view_lag",
            "consent records committed but not yet applied to the view, per partition",
            ["partition"],
            registry=r,
        )
        self.input_lag = Gauge(
            "consentgate_input_lag",
            "records of an assigned input partition not yet consumed",
            ["topic", "partition"],
            registry=r,
        )
        self.view_load_remaining = Gauge(
            "consentgate_view_load_remaining",
            "consent records still to load for a newly assigned partition",
            ["partition"],
            registry=r,
        )
        self.view_subjects = Gauge(
            "consentgate_view_subjects", "subjects held by the consent view", registry=r
        )
        self.ready = Gauge(
            "consentgate_ready",
            "1 once the consent view is loaded for every assigned partition",
            registry=r,
        )

    def outcome(self, sink: str, reason: str) -> Counter:
        counter = self._outcomes.get((sink, reason))
        if counter is None:
            counter = self._outcomes[sink, reason] = self.outcomes.labels(sink, reason)
        return counter

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
