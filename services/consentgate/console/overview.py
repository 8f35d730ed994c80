"""The overview page's data: decisions of the last hour per sink (allowed, denied by
reason), consent-state's lag behind consent-changes, dead letters and the last audit.

Each part is read on its own and fails on its own: a part that cannot be read is shown as
"not available" with the reason, never as zero. Decisions are counted by the subject
report's own rows (:func:`consentgate.ops.report_rows.decision_section`) over the records
whose Kafka timestamp is in the hour (:func:`consentgate.ops.reader.read_topic` ``since``).
Blocking: run in the threadpool.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from consentgate.console.sources import Sources
from consentgate.errors import ConsentgateError, DecodeError
from consentgate.models.records import DeadLetter, DecisionRecord
from consentgate.ops.reader import read_topic, watermarks
from consentgate.ops.report_format import Section, Total
from consentgate.ops.report_rows import decision_section

__all__ = ["AuditSummary", "Lag", "Overview", "read_overview"]

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)
_READ_ERRORS = (ConsentgateError, KafkaException, TimeoutError, OSError)


@dataclass
class Lag:
    """consent.changes records the fold has not committed yet, per partition."""

    group: str
    partitions: list[tuple[int, int, int | None, int]]  # partition, end, committed, lag
    oldest_unfolded: datetime | None

    @property
    def total(self) -> int:
        return sum(p[3] for p in self.partitions)


@dataclass
class AuditSummary:
    verdict: str
    started_at: str
    findings: dict[str, int]
    html: bool  # the HTML report is there to link


@dataclass
class Overview:
    as_of: datetime
    since: datetime
    decisions: Section | None = None
    decision_totals: dict[str, Total] = field(default_factory=dict)
    lag: Lag | None = None
    dead_letters_hour: list[tuple[str, str, int]] | None = None  # stage, error type, count
    dead_letters_total: int | None = None
    audit: AuditSummary | None = None
    missing: dict[str, str] = field(default_factory=dict)  # part -> why it is not shown


def _decisions(sources: Sources, since: datetime, out: Overview) -> None:
    records = []
    for msg in read_topic(sources.kafka, sources.topics.decisions, since=since):
        if msg.value() is None:
            continue
        try:
            records.append(sources.serde.decode_model(msg.value(), DecisionRecord))
        except DecodeError as exc:
            log.warning("overview: an unreadable decision record: %s", exc)
    section, totals = decision_section(records, f"Decisions ({sources.topics.decisions})")
    out.decisions, out.decision_totals = section, totals


def _dead_letters(sources: Sources, since: datetime, out: Overview) -> None:
    topic = sources.dead_letters
    marks = watermarks(sources.kafka, topic)
    out.dead_letters_total = sum(high - low for low, high in marks.values())
    kinds: Counter[tuple[str, str]] = Counter()
    for msg in read_topic(sources.kafka, topic, since=since):
        if msg.value() is None:
            continue
        try:
            letter = sources.serde.decode_model(msg.value(), DeadLetter)
        except DecodeError:
            kinds[("(undecodable)", "-")] += 1
            continue
        kinds[(letter.stage, letter.error_type)] += 1
    out.dead_letters_hour = [(s, e, n) for (s, e), n in sorted(kinds.items())]


def _lag(sources: Sources, group: str, out: Overview) -> None:
    topic = sources.topics.changes
    marks = watermarks(sources.kafka, topic)
    admin = AdminClient(sources.kafka)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in marks])
    answer = admin.list_consumer_group_offsets([request])[group].result(timeout=30)
    committed = {tp.partition: tp.offset for tp in answer.topic_partitions if tp.offset >= 0}
    rows: list[tuple[int, int, int | None, int]] = []
    oldest: list[tuple[int, int]] = []
    for p, (low, high) in sorted(marks.items()):
        done = committed.get(p)
        lag = high - max(done if done is not None else low, low)
        rows.append((p, high, done, max(lag, 0)))
        if lag > 0:
            oldest.append((p, max(done or low, low)))
    out.lag = Lag(group, rows, _first_time(sources, topic, oldest))


def _first_time(sources: Sources, topic: str, starts: list[tuple[int, int]]) -> datetime | None:
    """The earliest timestamp of the records at ``starts`` (the first unfolded ones)."""
    times = []
    for p, offset in starts[:8]:
        for msg in read_topic(sources.kafka, topic, partitions=[p]):
            if (msg.offset() or 0) >= offset:
                kind, ms = msg.timestamp()
                if kind and ms > 0:
                    times.append(datetime.fromtimestamp(ms / 1000, UTC))
                break
    return min(times) if times else None


def _audit(json_path: Path | None, html_path: Path | None, out: Overview) -> None:
    if json_path is None:
        out.missing["audit"] = (
            "no audit report configured (CONSENTGATE_CONSOLE_AUDIT_JSON: the output of "
            "consentgate audit --json)"
        )
        return
    try:
        data: dict[str, Any] = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        out.missing["audit"] = f"the audit report {json_path} cannot be read: {exc}"
        return
    findings = {
        str(k): int(v.get("count", 0))
        for k, v in (data.get("findings") or {}).items()
        if isinstance(v, dict)
    }
    out.audit = AuditSummary(
        str(data.get("verdict", "unknown")),
        str(data.get("started_at", "unknown")),
        {k: n for k, n in findings.items() if n},
        html_path is not None and html_path.is_file(),
    )


def read_overview(
    sources: Sources,
    *,
    fold_group: str,
    audit_json: Path | None,
    audit_html: Path | None,
    now: datetime | None = None,
) -> Overview:
    now = now or datetime.now(UTC)
    out = Overview(as_of=now, since=now - WINDOW)
    parts: dict[str, Callable[[], None]] = {
        "decisions": lambda: _decisions(sources, out.since, out),
        "lag": lambda: _lag(sources, fold_group, out),
        "dead_letters": lambda: _dead_letters(sources, out.since, out),
    }
    for name, read in parts.items():
        try:
            read()
        except _READ_ERRORS as exc:
            log.warning("overview: %s not available: %s", name, exc)
            out.missing[name] = f"cannot be read right now: {exc}"
    _audit(audit_json, audit_html, out)
    return out
