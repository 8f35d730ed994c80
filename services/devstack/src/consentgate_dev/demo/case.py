"""The Rikunabi case as data: 74,878 students, 38 client companies, 7,983 without consent.

Deterministic (seeded): every run generates the same consent mix and events, so numbers are
comparable run to run. Consent goes through the consent service's write path (requests
validated, times set by the service, appended to consent.changes; the fold makes the state);
events are produced afterwards, timed after the consent they rely on, as Avro single-object
records keyed by subject id (murmur2).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Producer

from consentgate.consent.requests import ChangeRequest
from consentgate.consent.service import ConsentService
from consentgate.models.consent import ConsentAction
from consentgate.serde import Serde

__all__ = ["CaseData", "CaseSpec", "produce_events", "write_consent"]

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


def _request(subject: str, purpose: str, recipient: str | None) -> ChangeRequest:
    return ChangeRequest(
        change_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{subject}/{purpose}/{recipient}")),
        subject_id=subject,
        action=ConsentAction.GRANT,
        purpose=purpose,
        recipient=recipient,
        notice_version="2019-03",
        method="WEB_FORM",
    )


def write_consent(
    spec: CaseSpec,
    service: ConsentService,
    rng: random.Random,
    *,
    progress: Callable[[str], None] = print,
) -> CaseData:
    """Every student's grants through the write path, pipelined; returns once all are in
    consent.changes (acknowledged). The fold turns them into consent.state."""
    data = CaseData()
    subjects = [f"student-{i:05d}" for i in range(spec.students)]
    data.never_shared = set(rng.sample(subjects, spec.never_shared))
    pending = []
    for n, subject in enumerate(subjects, 1):
        for request in _grants(rng, spec, subject, subject in data.never_shared):
            pending.append(service.changelog.submit(service.change(request, actor="demo")))
            data.consent_changes += 1
        if len(pending) >= 20_000:
            for future in pending:
                future.result(60)
            pending.clear()
        if n % 20_000 == 0:
            progress(f"  consent: {n:,}/{len(subjects):,} students")
    for future in pending:
        future.result(60)
    progress(f"  consent: {data.consent_changes:,} changes for {len(subjects):,} students")
    return data


def produce_events(
    spec: CaseSpec,
    data: CaseData,
    rng: random.Random,
    producer_config: dict[str, Any],
    *,
    after: datetime,
    browsing_topic: str,
    scores_topic: str,
    serde: Serde,
    progress: Callable[[str], None] = print,
) -> None:
    """The students' events, timed between ``after`` (every grant recorded) and now."""
    producer = Producer(producer_config)
    now = datetime.now(UTC)
    span_ms = max(int((now - after).total_seconds() * 1000), 1)
    subjects = [f"student-{i:05d}" for i in range(spec.students)]
    stream = _events(rng, spec, subjects, now, span_ms, serde, data, browsing_topic, scores_topic)
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


def _grants(
    rng: random.Random, spec: CaseSpec, subject: str, never_shared: bool
) -> list[ChangeRequest]:
    changes = []
    if rng.random() < spec.analytics_share:
        changes.append(_request(subject, "analytics", None))
    if rng.random() < spec.profiling_share:
        changes.append(_request(subject, "profiling", None))
    if not never_shared and spec.partners:
        for partner in rng.sample(spec.partners, rng.randint(1, min(4, len(spec.partners)))):
            changes.append(_request(subject, "partner_sharing", partner))
    return changes


def _events(  # noqa: PLR0917 - private generator, called once
    rng: random.Random,
    spec: CaseSpec,
    subjects: list[str],
    now: datetime,
    span_ms: int,
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
                "event_time": now - timedelta(milliseconds=rng.randrange(span_ms)),
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
                "event_time": now - timedelta(milliseconds=rng.randrange(span_ms)),
                "score_type": "offer_decline_probability",
                "score": round(rng.random(), 4),
                "model_version": "dmp-follow-2019",
                "company_id": rng.choice(spec.partners) if spec.partners else None,
            }
            data.score_events += 1
            yield scores_topic, key, serde.encode(score, "DerivedScore")
