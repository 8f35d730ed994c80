"""Subject and recipient reports, from Kafka alone (no database, no router state).

**Subject** (``consentgate report subject ID``), what a data subject or a regulator asks
"what did you do with my data":

- consent history: every change of the subject in consent.changes (the append-only log);
- current state: the subject's consent.state record, grant by grant, at the time of the read;
- provisions: the subject's records in the provision ledger;
- retractions: null-valued records written into sinks under the subject's keys;
- decisions: allowed / denied per sink over the subject's events.

Only partitions that can hold the subject are read where the topic is keyed by it:
consent.changes and consent.state are keyed by the subject id, the provision ledger is
written to the subject's partition (co-partitioned with the raw topics), a sink by the
subject's key in that sink. Partitions follow Kafka's murmur2 partitioner
(:func:`consentgate.router.partitioner.partition_for`). A sink key is known from the
pseudonym keys (when this process has them, as the router does), from the sink's
``keep_if_named_recipient`` handling (the raw id), or from the provision ledger (the key the
recipient got); where none is known, every partition of the sink is read and retractions are
matched by the ``cg-consent-change-id`` header against the subject's change ids (which are
matched everywhere anyway). Decisions are keyed by event id, so the whole decisions topic is
read; a record is decoded only if the subject id's bytes occur in it (an Avro string is its
UTF-8 bytes, so no record of the subject is skipped by this test).

**Recipient** (``consentgate report recipient ID [--since TIME]``), the record of provision
to a third party (APPI Art. 30): the recipient's name, address and country (from the policy;
the ledger keeps each record's own copy), then one row per provision (date, subject, the key
the recipient got, sink, purpose, data items, the consent it was provided on) and totals.
The ledger is read whole (a recipient's records are spread over every subject's partition).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from confluent_kafka import Message
from confluent_kafka.admin import AdminClient

from consentgate.client.messages import Retraction, classify
from consentgate.consent.timeline import Timeline
from consentgate.errors import ConfigError, ConsentgateError, DecodeError
from consentgate.models.consent import ConsentChange, ConsentTimeline
from consentgate.models.records import DecisionRecord, ProvisionRecord
from consentgate.ops.reader import read_topic
from consentgate.ops.report_format import Cell, Report, Section, Total
from consentgate.ops.report_rows import (
    FoundRetraction,
    LoggedChange,
    change_section,
    decision_section,
    provision_section,
    recipient_totals,
    retraction_section,
    state_section,
    unique_provisions,
)
from consentgate.policy import Policy, PseudonymKeys, Sink, retraction_key
from consentgate.router.config import TopicsSection
from consentgate.router.partitioner import partition_for
from consentgate.serde import Serde

__all__ = [
    "ReportTopics",
    "SubjectRecords",
    "build_subject_report",
    "read_subject",
    "recipient_report",
    "subject_report",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReportTopics:
    changes: str = "consent.changes.v1"
    state: str = "consent.state.v1"
    decisions: str = "consentgate.decisions.v1"
    provisions: str = "consentgate.provisions.v1"

    @classmethod
    def of(cls, topics: TopicsSection) -> ReportTopics:
        """The topics a router configured with ``topics`` writes and reads."""
        return cls(
            topics.consent_changes, topics.consent_state, topics.decisions, topics.provisions
        )


class _Reading:
    """Reads for one report, remembering which partitions were read and what was unreadable."""

    def __init__(self, kafka: dict[str, Any], serde: Serde) -> None:
        self.kafka, self.serde = kafka, serde
        self.read: dict[str, list[int]] = {}
        self.notes: list[str] = []
        self.unreadable = 0
        self._counts: dict[str, int] = {}

    def partitions(self, topic: str) -> int:
        if topic not in self._counts:
            meta = AdminClient(self.kafka).list_topics(topic, timeout=30).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise ConsentgateError(f"topic {topic} does not exist")
            self._counts[topic] = len(meta.partitions)
        return self._counts[topic]

    def messages(self, topic: str, partitions: Iterable[int] | None = None) -> Iterator[Message]:
        parts = sorted(set(partitions)) if partitions is not None else None
        self.read[topic] = parts if parts is not None else list(range(self.partitions(topic)))
        return read_topic(self.kafka, topic, partitions=parts)

    def decode(self, msg: Message, model: type[Any]) -> Any | None:
        try:
            return self.serde.decode_model(
                msg.value(),
                model,
                topic=msg.topic(),
                partition=msg.partition(),
                offset=msg.offset(),
            )
        except DecodeError as exc:
            self.unreadable += 1
            log.warning("report: skipping an unreadable record: %s", exc)
            return None

    def finish_notes(self) -> list[str]:
        if self.unreadable:
            self.notes.append(
                f"{self.unreadable} records in the partitions read could not be decoded "
                "(skipped; they may belong to this report)"
            )
        return self.notes


def _subject_of(reading: _Reading, topic: str, subject: str) -> int:
    return partition_for(subject.encode(), reading.partitions(topic))


def _changes(reading: _Reading, topic: str, subject: str) -> list[LoggedChange]:
    needle = subject.encode()
    out = []
    for msg in reading.messages(topic, [_subject_of(reading, topic, subject)]):
        raw = msg.value()
        if raw is None or needle not in raw:
            continue
        change = reading.decode(msg, ConsentChange)
        if change is not None and change.subject_id == subject:
            out.append(LoggedChange(change, msg.partition() or 0, msg.offset() or 0))
    return out


def _state(reading: _Reading, topic: str, subject: str) -> tuple[str, Timeline | None]:
    """("present" | "erased" | "missing", the timeline): the subject's last record."""
    needle = subject.encode()
    last: Message | None = None
    for msg in reading.messages(topic, [_subject_of(reading, topic, subject)]):
        if msg.key() == needle:
            last = msg
    if last is None:
        return "missing", None
    if last.value() is None:
        return "erased", None
    record = reading.decode(last, ConsentTimeline)
    return ("present", Timeline(record)) if record is not None else ("unreadable", None)


def _provisions(
    reading: _Reading, topic: str, partitions: Iterable[int] | None, needle: str, field: str
) -> list[ProvisionRecord]:
    out = []
    raw_needle = needle.encode()
    for msg in reading.messages(topic, partitions):
        raw = msg.value()
        if raw is None or raw_needle not in raw:
            continue
        record = reading.decode(msg, ProvisionRecord)
        if record is not None and getattr(record, field) == needle:
            out.append(record)
    return out


def _sink_keys(
    sink: Sink, subject: str, keys: PseudonymKeys | None, ledger: list[ProvisionRecord]
) -> tuple[set[str], str | None]:
    """The keys ``subject`` can have in ``sink``, and a note if they disagree."""
    computed: str | None = None
    with contextlib.suppress(ConfigError):  # no pseudonym key here: the ledger may know it
        computed = retraction_key(sink, subject, keys if keys is not None else PseudonymKeys())
    from_ledger = {r.subject_key for r in ledger if r.sink == sink.name and r.subject_key}
    note = None
    if computed is not None and from_ledger and from_ledger != {computed}:
        note = (
            f"{sink.name}: the key from this process's pseudonym keys differs from the key in "
            "the provision ledger (are the router's keys the same?); both were searched"
        )
    return ({computed} if computed else set()) | from_ledger, note


def _retractions(
    reading: _Reading,
    *,
    policy: Policy,
    subject: str,
    change_ids: set[str],
    keys: PseudonymKeys | None,
    ledger: list[ProvisionRecord],
) -> list[FoundRetraction]:
    found = []
    for sink in policy.sinks:
        if not sink.retractable:
            continue
        candidates, note = _sink_keys(sink, subject, keys, ledger)
        if note:
            reading.notes.append(note)
        try:
            count = reading.partitions(sink.topic)
        except ConsentgateError:
            reading.notes.append(f"sink topic {sink.topic} does not exist: not searched")
            continue
        parts = {partition_for(k.encode(), count) for k in candidates} if candidates else None
        for msg in reading.messages(sink.topic, parts):
            if msg.value() is not None:
                continue
            item = classify(reading.serde, msg)
            if not isinstance(item, Retraction):
                continue
            if item.key in candidates:
                found.append(FoundRetraction(sink.name, item, "key"))
            elif item.change_id in change_ids:
                found.append(FoundRetraction(sink.name, item, "change id"))
    return found


def _decisions(reading: _Reading, topic: str, subject: str) -> list[DecisionRecord]:
    needle = subject.encode()
    out = []
    for msg in reading.messages(topic):
        raw = msg.value()
        if raw is None or needle not in raw:
            continue
        record = reading.decode(msg, DecisionRecord)
        if record is not None and record.subject_id == subject:
            out.append(record)
    return out


@dataclass(frozen=True, slots=True)
class SubjectRecords:
    """What the subject report is made of, as read (``decisions`` None: not read)."""

    subject: str
    status: str  # "present" | "erased" | "missing" | "unreadable"
    timeline: Timeline | None
    changes: list[LoggedChange]
    ledger: list[ProvisionRecord]
    repeats: int
    retractions: list[FoundRetraction]
    decisions: list[DecisionRecord] | None
    read: dict[str, list[int]]
    notes: list[str]


def read_subject(
    kafka: dict[str, Any],
    policy: Policy,
    serde: Serde,
    subject: str,
    *,
    topics: ReportTopics | None = None,
    keys: PseudonymKeys | None = None,
    decisions: bool = True,
) -> SubjectRecords:
    """Read everything Kafka holds about ``subject`` (the decisions topic, read whole, only
    with ``decisions``)."""
    topics = topics or ReportTopics()
    reading = _Reading(kafka, serde)
    changes = _changes(reading, topics.changes, subject)
    status, timeline = _state(reading, topics.state, subject)
    ledger, repeats = unique_provisions(
        _provisions(
            reading,
            topics.provisions,
            [_subject_of(reading, topics.provisions, subject)],
            subject,
            "subject_id",
        )
    )
    change_ids = {c.change.change_id for c in changes}
    if timeline is not None:
        change_ids |= {c.change_id for c in timeline.record.changes}
    found = _retractions(
        reading, policy=policy, subject=subject, change_ids=change_ids, keys=keys, ledger=ledger
    )
    decided = _decisions(reading, topics.decisions, subject) if decisions else None
    return SubjectRecords(
        subject,
        status,
        timeline,
        changes,
        ledger,
        repeats,
        found,
        decided,
        reading.read,
        reading.finish_notes(),
    )


def subject_report(
    kafka: dict[str, Any],
    policy: Policy,
    serde: Serde,
    subject: str,
    *,
    topics: ReportTopics | None = None,
    keys: PseudonymKeys | None = None,
    now: datetime | None = None,
) -> Report:
    """Everything Kafka holds about ``subject`` (see the module docstring)."""
    topics = topics or ReportTopics()
    records = read_subject(kafka, policy, serde, subject, topics=topics, keys=keys)
    return build_subject_report(records, topics, now)


def build_subject_report(
    records: SubjectRecords, topics: ReportTopics | None = None, now: datetime | None = None
) -> Report:
    """The subject report of ``records`` (without a decisions section if none were read)."""
    topics = topics or ReportTopics()
    now = now or datetime.now(UTC)
    subject, timeline, ledger, found = (
        records.subject,
        records.timeline,
        records.ledger,
        records.retractions,
    )
    about: dict[str, Cell] = {"subject_id": subject, "consent_state": records.status}
    if timeline is not None:
        record = timeline.record
        about.update(
            state_version=record.version,
            state_updated_at=record.updated_at,
            erased_at=record.erased_at,
        )
    about["as_of"] = now
    sections: list[Section] = [
        change_section(records.changes, f"Consent history ({topics.changes})"),
        state_section(timeline, now, f"Current consent ({topics.state})"),
        provision_section(ledger, f"Provided to third parties ({topics.provisions})", by="subject"),
        retraction_section(found, "Retractions written into sinks"),
    ]
    decision_totals: dict[str, Total] = {}
    if records.decisions is not None:
        decisions, decision_totals = decision_section(
            records.decisions, f"Decisions ({topics.decisions})"
        )
        sections.append(decisions)
    totals = {
        "consent_changes": len(records.changes),
        "provisions": len(ledger),
        "recipients": len({r.recipient_id for r in ledger}),
        "retractions": len(found),
        **decision_totals,
        "repeated_provision_ids": records.repeats,
    }
    return Report(
        "subject",
        f"consentgate report: subject {subject}",
        about,
        sections,
        totals,
        dict(records.read),
        list(records.notes),
    )


def recipient_report(
    kafka: dict[str, Any],
    policy: Policy,
    serde: Serde,
    recipient: str,
    *,
    topics: ReportTopics | None = None,
    since: datetime | date | None = None,
) -> Report:
    """The provision record of ``recipient`` (from ``since``'s UTC date on, if given)."""
    topics = topics or ReportTopics()
    reading = _Reading(kafka, serde)
    first_day = _day(since)
    records = [
        r
        for r in _provisions(reading, topics.provisions, None, recipient, "recipient_id")
        if first_day is None or r.provision_date >= first_day
    ]
    ledger, repeats = unique_provisions(records)
    about = _recipient_about(policy, recipient, ledger, reading.notes)
    about["since"] = first_day
    sinks = tuple(s.name for s in policy.sinks if s.recipient == recipient)
    about["sinks"] = sinks
    section = provision_section(ledger, f"Provisions ({topics.provisions})", by="recipient")
    return Report(
        "recipient",
        f"consentgate report: provision record of recipient {recipient}",
        about,
        [section],
        recipient_totals(ledger, repeats),
        reading.read,
        reading.finish_notes(),
    )


def _day(since: datetime | date | None) -> date | None:
    if isinstance(since, datetime):
        return since.astimezone(UTC).date()
    return since


def _recipient_about(
    policy: Policy, recipient: str, ledger: list[ProvisionRecord], notes: list[str]
) -> dict[str, Cell]:
    try:
        entry = policy.recipient(recipient)
    except KeyError:
        if not ledger:
            raise ConsentgateError(
                f"recipient {recipient!r} is neither in the policy nor in the ledger"
            ) from None
        latest = max(ledger, key=lambda r: (r.provision_date, r.consent_confirmed_at))
        notes.append("the recipient is not in the policy: name and address from the ledger")
        return {
            "recipient_id": recipient,
            "name": latest.recipient_name,
            "address": latest.recipient_address,
            "country": latest.recipient_country,
        }
    other = [
        r
        for r in ledger
        if (r.recipient_name, r.recipient_address, r.recipient_country)
        != (entry.name, entry.address, entry.country)
    ]
    if other:
        notes.append(
            f"{len(other)} provisions record other recipient details than the policy has now "
            "(columns recipient_name, recipient_address, recipient_country of --csv / --json)"
        )
    return {
        "recipient_id": recipient,
        "name": entry.name,
        "address": entry.address,
        "country": entry.country,
    }
