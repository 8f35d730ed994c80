"""Generate a routing policy for N partner companies (the case had 38 buyers).

Topic names take an optional suffix so that tests can run side by side on one cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

__all__ = ["PolicyPlan", "partner_ids", "policy_yaml"]


def partner_ids(count: int) -> list[str]:
    return [f"client-{i:02d}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class PolicyPlan:
    partners: list[str]
    score_partners: list[str]
    suffix: str = ""
    clock_skew_seconds: int = 30
    consent_wait_seconds: float = 5.0

    def topic(self, base: str) -> str:
        return f"{base}{self.suffix}"

    @property
    def browsing_topic(self) -> str:
        return self.topic("events.browsing.raw.v1")

    @property
    def scores_topic(self) -> str:
        return self.topic("scores.offer_decline.raw.v1")

    @property
    def analytics_topic(self) -> str:
        return self.topic("events.browsing.analytics.v1")

    @property
    def changes_topic(self) -> str:
        return self.topic("consent.changes.v1")

    @property
    def state_topic(self) -> str:
        return self.topic("consent.state.v1")

    @property
    def decisions_topic(self) -> str:
        return self.topic("consentgate.decisions.v1")

    @property
    def provisions_topic(self) -> str:
        return self.topic("consentgate.provisions.v1")

    @property
    def dlq_topic(self) -> str:
        return self.topic("consentgate.dlq.v1")

    def core_topics(self) -> list[str]:
        """The router's inputs and bookkeeping outputs (not the sinks)."""
        return [
            self.browsing_topic,
            self.scores_topic,
            self.changes_topic,
            self.state_topic,
            self.decisions_topic,
            self.provisions_topic,
            self.dlq_topic,
        ]

    def router_topic_args(self) -> list[str]:
        """``consentgate router`` options naming these topics."""
        return [
            "--consent-topic",
            self.state_topic,
            "--changes-topic",
            self.changes_topic,
            "--decisions-topic",
            self.decisions_topic,
            "--provisions-topic",
            self.provisions_topic,
            "--dlq-topic",
            self.dlq_topic,
        ]

    def partner_topic(self, partner: str, kind: str = "browsing") -> str:
        return self.topic(f"partner.{partner}.{kind}.v1")

    def sink_topics(self) -> list[str]:
        return (
            [self.analytics_topic]
            + [self.partner_topic(p) for p in self.partners]
            + [self.partner_topic(p, "scores") for p in self.score_partners]
        )


def policy_yaml(plan: PolicyPlan) -> str:
    """The policy file for ``plan``, in the shape of ``deploy/policy.yaml``."""
    recipients = [
        {
            "id": p,
            "name": f"Client Company {p.split('-')[-1]} K.K.",
            "address": f"{p.split('-')[-1]}-1 Example-cho, Chiyoda-ku, Tokyo",
            "country": "JP",
        }
        for p in plan.partners
    ]
    sinks: list[dict[str, object]] = [
        {
            "name": "analytics",
            "topic": plan.analytics_topic,
            "source": "browsing",
            "purpose": "analytics",
            "fields": [
                "event_id",
                "event_time",
                "event_type",
                "page_url",
                "job_id",
                "company_id",
                "device",
                "country",
            ],
            "subject_id": "pseudonymize",
        }
    ]
    sinks += [
        {
            "name": f"partner.{p}.browsing",
            "topic": plan.partner_topic(p),
            "source": "browsing",
            "purpose": "partner_sharing",
            "recipient": p,
            "fields": ["event_id", "event_time", "event_type", "job_id", "company_id"],
            "subject_id": "pseudonymize",
            "opt_out_signals": ["gpc"],
        }
        for p in plan.partners
    ]
    sinks += [
        {
            "name": f"partner.{p}.scores",
            "topic": plan.partner_topic(p, "scores"),
            "source": "decline_scores",
            "purpose": "partner_sharing",
            "recipient": p,
            "extra_purposes": ["profiling"],
            "fields": ["event_id", "event_time", "score_type", "score", "model_version"],
            "subject_id": "pseudonymize",
        }
        for p in plan.score_partners
    ]
    doc = {
        "description": f"generated: {len(plan.partners)} partner companies",
        "purposes": {
            "analytics": "First-party measurement of how the site is used.",
            "partner_sharing": "Providing the subject's data to the named client company.",
            "profiling": "Computing scores about the subject from their behaviour.",
        },
        "recipients": recipients,
        "sources": [
            {
                "name": "browsing",
                "topic": plan.browsing_topic,
                "schema": "dev.consentgate.v1.BrowsingEvent",
                "subject_field": "subject_id",
                "event_time_field": "event_time",
                "event_id_field": "event_id",
                "signal_fields": {"gpc": "gpc"},
            },
            {
                "name": "decline_scores",
                "topic": plan.scores_topic,
                "schema": "dev.consentgate.v1.DerivedScore",
                "subject_field": "subject_id",
                "event_time_field": "event_time",
                "event_id_field": "event_id",
            },
        ],
        "sinks": sinks,
        "defaults": {
            "clock_skew_seconds": plan.clock_skew_seconds,
            "consent_wait_seconds": plan.consent_wait_seconds,
            "history_horizon_days": 90,
        },
    }
    return str(yaml.safe_dump(doc, sort_keys=False))
