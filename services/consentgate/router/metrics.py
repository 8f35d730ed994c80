"""Prometheus metrics of the router, on a registry of its own (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["RouterMetrics"]


class RouterMetrics:
    """Everything an operator needs to see whether consent is enforced and keeping up."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "consentgate_records_consumed", "raw records consumed", ["source"], registry=r
        )
        self.outcomes = Counter(
            "consentgate_sink_outcomes",
            "decisions per sink and reason (allowed or the deny reason)",
            ["sink", "reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "consentgate_dead_letters",
            "records sent to the dead-letter topic",
            ["stage"],
            registry=r,
        )
        self.retractions = Counter(
            "consentgate_retractions", "retraction records written", ["sink"], registry=r
        )
        self.waiting = Gauge(
            "consentgate_gate_waiting_events",
            "events waiting at the time-correct gate for a fresh enough consent view",
            registry=r,
        )
        self.consent_lag = Gauge(
            "consentgate_consent_view_lag",
            "consent records appended but not yet applied to the view, per partition",
            ["partition"],
            registry=r,
        )
        self.ready = Gauge(
            "consentgate_ready",
            "1 once the consent view is loaded for every assigned partition",
            registry=r,
        )
        self.decision_seconds = Histogram(
            "consentgate_decision_seconds",
            "time from consuming a record to its outputs being handed to the producer",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
