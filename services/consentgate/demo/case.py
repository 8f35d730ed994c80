"""The Rikunabi case as data: 74,878 students, 38 client companies, 7,983 without consent.

Deterministic (seeded): every run generates the same consent mix and events, so numbers are
comparable run to run. Consent is written through the real consent writer; events are
produced as Avro single-object records keyed by subject id (murmur2).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Producer

from consentgate.consent.writer import ConsentWriter
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod
from consentgate.serde import Serde

__all__ = ["CaseData", "CaseSpec", "generate"]

EVENT_TYPES = ("PAGE_VIEW", "SEARCH", "JOB_VIEW", "COMPANY_VIEW", "BOOKMARK", "APPLY")


@dataclass(frozen=True)
class CaseSpec:
    students: int = 74_878
    partners: list[str] = field(default_factory=list)
    never_shared: int = 7_983  # never consented to partner sharing with anyone
    events_per_student: int = 1
    score_share: float = 0.10  # students with a decline-probability score event
    analytics_share: float = 0.85
    profiling_share: float = 0.20
    gpc_share: float = 0.05
    seed: int = 2019


@dataclass
class CaseData:
    never_shared: set[str] = field(default_factory=set)
    consent_changes: int = 0
    browsing_events: int = 0
    score_events: int = 0

    @property
    def events(self) -> int:
        return self.browsing_events + self.score_events


def _change(subject: str, purpose: str, recipient: str | None, at: datetime) -> ConsentChange:
    return ConsentChange(
        change_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{subject}/{purpose}/{recipient}")),
        subject_id=subject,
        action=ConsentAction.GRANT,
        purpose=purpose,
        recipient=recipient,
        effective_time=at,
        recorded_time=at,
        notice_version="2019-03",
        method=ConsentMethod.WEB_FORM,
    )


def generate(
    spec: CaseSpec,
    writer: ConsentWriter,
    producer_config: dict[str, Any],
    *,
    browsing_topic: str,
    scores_topic: str,
    serde: Serde,
    progress: Callable[[str], None] = print,
) -> CaseData:
    """Write the consent mix, then produce the events; returns what was generated."""
    rng = random.Random(spec.seed)  # noqa: S311 - reproducible test data, not secrets
    data = CaseData()
    subjects = [f"student-{i:05d}" for i in range(spec.students)]
    data.never_shared = set(rng.sample(subjects, spec.never_shared))
    granted_at = datetime.now(UTC) - timedelta(days=30)
    for n, subject in enumerate(subjects, 1):
        for change in _grants(rng, spec, subject, subject in data.never_shared, granted_at):
            writer.write(change)
            data.consent_changes += 1
        if n % 20_000 == 0:
            progress(f"  consent: {n:,}/{len(subjects):,} students")
    writer.flush()
    progress(f"  consent: {data.consent_changes:,} changes for {len(subjects):,} students")
    producer = Producer(producer_config)
    now = datetime.now(UTC)
    stream = _events(rng, spec, subjects, now, serde, data, browsing_topic, scores_topic)
    for n, (topic, key, value) in enumerate(stream, 1):
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        if n % 20_000 == 0:
            producer.poll(0)
            progress(f"  events: {n:,} produced")
    if producer.flush(60):
        raise RuntimeError("events not acknowledged")
    progress(f"  events: {data.browsing_events:,} browsing + {data.score_events:,} scores")
    return data


def _grants(
    rng: random.Random, spec: CaseSpec, subject: str, never_shared: bool, at: datetime
) -> list[ConsentChange]:
    changes = []
    if rng.random() < spec.analytics_share:
        changes.append(_change(subject, "analytics", None, at))
    if rng.random() < spec.profiling_share:
        changes.append(_change(subject, "profiling", None, at))
    if not never_shared and spec.partners:
        for partner in rng.sample(spec.partners, rng.randint(1, min(4, len(spec.partners)))):
            changes.append(_change(subject, "partner_sharing", partner, at))
    return changes


def _events(  # noqa: PLR0917 - private generator, called once
    rng: random.Random,
    spec: CaseSpec,
    subjects: list[str],
    now: datetime,
    serde: Serde,
    data: CaseData,
    browsing_topic: str,
    scores_topic: str,
) -> Iterator[tuple[str, bytes, bytes]]:
    for subject in subjects:
        key = subject.encode()
        for _ in range(spec.events_per_student):
            company = rng.choice(spec.partners) if spec.partners else None
            datum = {
                "event_id": uuid.UUID(int=rng.getrandbits(128), version=4),
                "subject_id": subject,
                "event_time": now - timedelta(seconds=rng.randint(1, 600)),
                "event_type": rng.choice(EVENT_TYPES),
                "job_id": f"job-{rng.randint(1, 5000)}",
                "company_id": company,
                "page_url": f"https://jobs.example/jobs/{rng.randint(1, 5000)}",
                "country": "JP",
                "gpc": rng.random() < spec.gpc_share,
            }
            data.browsing_events += 1
            yield browsing_topic, key, serde.encode(datum, "BrowsingEvent")
        if rng.random() < spec.score_share:
            score = {
                "event_id": uuid.UUID(int=rng.getrandbits(128), version=4),
                "subject_id": subject,
                "event_time": now - timedelta(seconds=rng.randint(1, 600)),
                "score_type": "offer_decline_probability",
                "score": round(rng.random(), 4),
                "model_version": "dmp-follow-2019",
                "company_id": rng.choice(spec.partners) if spec.partners else None,
            }
            data.score_events += 1
            yield scores_topic, key, serde.encode(score, "DerivedScore")
