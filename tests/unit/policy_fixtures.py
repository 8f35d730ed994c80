"""A small policy covering every sink shape, for decide/project tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import SecretStr

from consentgate.policy import Policy, PseudonymKeys, SourceEvent, parse_policy
from tests.unit.consent_strategies import SUBJECT

POLICY_YAML = """
purposes:
  analytics: site analytics
  partner_sharing: giving data to the named company
  profiling: scores about the person
recipients:
  - {id: acme-corp, name: ACME Corp., address: 1 Example St, country: JP}
  - {id: beta-inc, name: Beta Inc., address: 2 Example St, country: US}
sources:
  - name: browsing
    topic: events.browsing.raw.v1
    schema: dev.consentgate.v1.BrowsingEvent
    signal_fields: {gpc: gpc}
  - name: scores
    topic: scores.offer_decline.raw.v1
    schema: dev.consentgate.v1.DerivedScore
sinks:
  - name: analytics
    topic: events.browsing.analytics.v1
    source: browsing
    purpose: analytics
    fields: [event_id, event_time, page_url, company_id]
    subject_id: pseudonymize
  - name: site_counts
    topic: events.browsing.counts.v1
    source: browsing
    purpose: analytics
    fields: [event_type, country]
    subject_id: drop
  - name: partner.acme-corp.browsing
    topic: partner.acme-corp.browsing.v1
    source: browsing
    purpose: partner_sharing
    recipient: acme-corp
    fields: [event_id, event_time, job_id]
    subject_id: pseudonymize
    opt_out_signals: [gpc]
  - name: partner.beta-inc.browsing
    topic: partner.beta-inc.browsing.v1
    source: browsing
    purpose: partner_sharing
    recipient: beta-inc
    fields: [event_id, job_id]
    subject_id: keep_if_named_recipient
    opt_out_signals: [gpc]
  - name: partner.acme-corp.scores
    topic: partner.acme-corp.scores.v1
    source: scores
    purpose: partner_sharing
    recipient: acme-corp
    extra_purposes: [profiling]
    fields: [event_id, score_type, score]
    subject_id: pseudonymize
  - name: profiling.scores
    topic: scores.offer_decline.internal.v1
    source: scores
    purpose: profiling
    fields: [score_type, score, model_version]
    subject_id: pseudonymize
defaults:
  clock_skew_seconds: 60
"""

POLICY: Policy = parse_policy(POLICY_YAML, origin="test-policy").policy
DEFAULTS = POLICY.defaults
SINKS = {sink.name: sink for sink in POLICY.sinks}
KEYS = PseudonymKeys(
    {
        "_first_party": SecretStr("first-party-key-0123456789"),
        "acme-corp": SecretStr("acme-corp-key-0123456789ab"),
        "beta-inc": SecretStr("beta-inc-key-0123456789abc"),
    }
)

BROWSING_FIELDS: dict[str, Any] = {
    "session_id": "sess-1",
    "event_type": "JOB_VIEW",
    "page_url": "https://jobs.example/j/42",
    "job_id": "j-42",
    "company_id": "acme-corp",
    "search_query": "engineer tokyo",
    "referrer": None,
    "device": None,
    "ip_address": "192.0.2.7",
    "country": "JP",
}
SCORE_FIELDS: dict[str, Any] = {
    "score_type": "offer_decline_probability",
    "score": 0.83,
    "model_version": "m-7",
    "company_id": "acme-corp",
}


def event(
    t: datetime | None,
    *,
    source: str = "browsing",
    signals: frozenset[str] = frozenset(),
    subject: str | None = SUBJECT,
    event_id: str | None = "e-0001",
) -> SourceEvent:
    fields = dict(BROWSING_FIELDS if source == "browsing" else SCORE_FIELDS)
    fields.update(event_id=event_id, subject_id=subject, event_time=t, gpc="gpc" in signals)
    return SourceEvent(source, event_id, subject, t, fields, signals)
