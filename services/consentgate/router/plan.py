"""The router's pure core: from one raw record (and the subject's consent) to the records to
write. No I/O, no clock: the worker decodes nothing itself, it asks this and produces.

For every raw record exactly one of:
- a dead letter (undecodable bytes, wrong record type, invalid event: missing ids or time, or
  an event time beyond the clock skew), or
- one decision record holding every sink's outcome, plus, for each allowed sink, the
  projected record and, for partner sinks, a provision record (once per subject, recipient
  and day within this process; the provision id is deterministic, so repeats are idempotent).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consentgate.consent.timeline import Timeline
from consentgate.errors import ConsentgateError, DecodeError
from consentgate.models.consent import ConsentTimeline
from consentgate.models.records import DeadLetter, ProvisionRecord
from consentgate.policy import (
    Decision,
    Policy,
    PseudonymKeys,
    ReasonCode,
    Sink,
    SourceEvent,
    decide_all,
    project,
)
from consentgate.router.outputs import HEADER, Output, OutputTopics
from consentgate.serde import Serde

__all__ = ["SINK_SCHEMAS", "Parsed", "RawRecord", "RoutePlan", "Router"]

log = logging.getLogger(__name__)

SINK_SCHEMAS = {
    "dev.consentgate.v1.BrowsingEvent": "dev.consentgate.v1.BrowsingSinkRecord",
    "dev.consentgate.v1.DerivedScore": "dev.consentgate.v1.ScoreSinkRecord",
}
"""The sink record schema of each source schema."""


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as consumed: coordinates and bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: datetime | None = None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Parsed:
    """A decoded, valid source event and where it came from."""

    rec: RawRecord
    event: SourceEvent


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """What to write for one raw record, and what it was."""

    outputs: tuple[Output, ...]
    subject_id: str | None
    decisions: tuple[tuple[Sink, Decision], ...] = ()
    dead_letter: bool = False


class Router:
    """Decides and projects; holds the policy, serde and pseudonym keys, nothing mutable but
    a small memory of provision ids already written today."""

    def __init__(
        self,
        policy: Policy,
        serde: Serde,
        keys: PseudonymKeys,
        topics: OutputTopics | None = None,
        *,
        provision_memory: int = 1_000_000,
    ) -> None:
        self.policy = policy
        self.serde = serde
        self.keys = keys
        self.topics = topics or OutputTopics()
        self._provided: dict[str, None] = {}
        self._provision_memory = provision_memory
        for source in policy.sources:
            if source.schema_name not in SINK_SCHEMAS:
                raise ConsentgateError(
                    f"source {source.name}: no sink schema for {source.schema_name}"
                )

    # -- consent ------------------------------------------------------------------------
    def timeline(self, raw: bytes | None) -> Timeline | None:
        """The subject's timeline from the consent view's bytes (None: no record / erased).

        Raises DecodeError for unreadable consent (the caller denies as consent_unreadable).
        """
        if raw is None:
            return None
        record = self.serde.decode_model(raw, ConsentTimeline)
        return Timeline(record)

    # -- routing ------------------------------------------------------------------------
    def parse(self, rec: RawRecord, now: datetime) -> Parsed | RoutePlan:
        """Decode and validate a raw record: the event, or the plan of its dead letter."""
        source = self.policy.source_for_topic(rec.topic)
        if source is None:
            return self._dead(rec, now, "policy", "ConfigError", f"no source reads {rec.topic}")
        try:
            decoded = self.serde.decode(
                rec.value, topic=rec.topic, partition=rec.partition, offset=rec.offset
            )
        except DecodeError as exc:
            return self._dead(rec, now, "decode", type(exc).__name__, exc.reason)
        if decoded.name != source.schema_name:
            reason = f"expected {source.schema_name}, got {decoded.name}"
            return self._dead(rec, now, "validate", "WrongRecordType", reason)
        event = SourceEvent.from_record(source, decoded.value)
        problem = event.problem(now, self.policy.defaults.clock_skew)
        if problem is not None:
            return self._dead(rec, now, "validate", "InvalidEvent", problem)
        return Parsed(rec, event)

    def plan(
        self,
        parsed: Parsed,
        consent: Timeline | None,
        now: datetime,
        *,
        override: ReasonCode | None = None,
    ) -> RoutePlan:
        """Decide every sink of the event's source and build the records to write.

        ``override`` (consent_state_stale, consent_unreadable, erased) denies every sink with
        that reason: fail closed.
        """
        rec, event = parsed.rec, parsed.event
        sinks = self.policy.sinks_for(event.source)
        if override is not None:
            decisions = [(s, Decision.deny(override)) for s in sinks]
        else:
            decisions = decide_all(event, consent, sinks, now, self.policy.defaults)
        outputs: list[Output] = []
        for sink, decision in decisions:
            if decision.allowed:
                outputs.extend(self._deliver(rec, event, sink, decision, now))
        outputs.append(self._decision(rec, event, decisions, consent, now))
        return RoutePlan(tuple(outputs), event.subject_id, tuple(decisions))

    def route(
        self,
        rec: RawRecord,
        consent: Timeline | None,
        now: datetime,
        *,
        override: ReasonCode | None = None,
    ) -> RoutePlan:
        """``parse`` then ``plan``, for callers that have the consent at hand (replay, tests)."""
        parsed = self.parse(rec, now)
        if isinstance(parsed, RoutePlan):
            return parsed
        return self.plan(parsed, consent, now, override=override)

    def _deliver(
        self,
        rec: RawRecord,
        event: SourceEvent,
        sink: Sink,
        decision: Decision,
        now: datetime,
    ) -> list[Output]:
        evidence = decision.evidence
        if evidence is None:  # an allowed decision always has evidence
            raise ConsentgateError(f"allowed decision without evidence for {sink.name}")
        schema = self.policy.source(event.source).schema_name
        value = project(event, sink, evidence, self.keys)
        value["evidence"] = {
            "consent_change_id": evidence.change_id,
            "consent_notice_version": evidence.notice_version,
            "consent_method": str(evidence.method),
            "policy_version": self.policy.version,
            "source_topic": rec.topic,
            "source_partition": rec.partition,
            "source_offset": rec.offset,
            "event_id": event.fields[_id_field(self.policy, event)],
            "decided_at": now,
        }
        key = value["subject_key"] if value["subject_key"] is not None else event.event_id
        headers = (
            (HEADER.PURPOSE, sink.purpose.encode()),
            *(((HEADER.RECIPIENT, sink.recipient.encode()),) if sink.recipient else ()),
            (HEADER.EVENT_ID, str(event.event_id).encode()),
            (HEADER.POLICY_VERSION, self.policy.version.encode()),
            (HEADER.CONSENT_CHANGE, evidence.change_id.encode()),
            (HEADER.SOURCE, rec.where.encode()),
        )
        out = [
            Output(
                sink.topic,
                str(key).encode(),
                self.serde.encode(value, SINK_SCHEMAS[schema]),
                headers,
            )
        ]
        if sink.recipient is not None:
            provision = self._provision(event, sink, decision, value, now)
            if provision is not None:
                out.append(provision)
        return out

    def _provision(
        self,
        event: SourceEvent,
        sink: Sink,
        decision: Decision,
        value: Mapping[str, Any],
        now: datetime,
    ) -> Output | None:
        evidence = decision.evidence
        if sink.recipient is None or evidence is None or event.subject_id is None:
            return None  # not a partner delivery
        day = now.date()
        pid = ProvisionRecord.make_id(sink.recipient, event.subject_id, sink.name, day)
        if pid in self._provided:
            return None
        self._remember(pid)
        recipient = self.policy.recipient(sink.recipient)
        record = ProvisionRecord(
            provision_id=pid,
            provision_date=day,
            recipient_id=recipient.id,
            recipient_name=recipient.name,
            recipient_address=recipient.address,
            recipient_country=recipient.country,
            subject_id=event.subject_id,
            subject_key=value["subject_key"],
            sink=sink.name,
            purpose=sink.purpose,
            data_items=list(sink.fields),
            consent_change_id=evidence.change_id,
            consent_notice_version=evidence.notice_version,
            consent_method=str(evidence.method),
            consent_confirmed_at=now,
            first_event_id=value["evidence"]["event_id"],
            policy_version=self.policy.version,
        )
        return Output(self.topics.provisions, pid.encode(), self.serde.encode(record))

    def _remember(self, pid: str) -> None:
        if len(self._provided) >= self._provision_memory:
            self._provided.pop(next(iter(self._provided)))
        self._provided[pid] = None

    def _decision(
        self,
        rec: RawRecord,
        event: SourceEvent,
        decisions: list[tuple[Sink, Decision]],
        consent: Timeline | None,
        now: datetime,
    ) -> Output:
        event_id = event.fields[_id_field(self.policy, event)]
        record = {
            "event_id": event_id,
            "source_topic": rec.topic,
            "source_partition": rec.partition,
            "source_offset": rec.offset,
            "subject_id": event.subject_id,
            "event_time": event.event_time,
            "decided_at": now,
            "policy_version": self.policy.version,
            "consent_version": consent.version if consent is not None else None,
            "outcomes": [
                {
                    "sink": sink.name,
                    "allowed": d.allowed,
                    "reason": str(d.reason),
                    "evidence_change_id": d.change_id,
                }
                for sink, d in decisions
            ],
        }
        return Output(
            self.topics.decisions,
            str(event_id).encode(),
            self.serde.encode(record, "dev.consentgate.v1.DecisionRecord"),
            ((HEADER.SOURCE, rec.where.encode()),),
        )

    def dead_letter(
        self, rec: RawRecord, now: datetime, stage: str, error: Exception | str
    ) -> Output:
        """The dead-letter record of ``rec``: raw key and bytes, where, and why."""
        if isinstance(error, DecodeError):
            error_type, reason = type(error).__name__, error.reason
        elif isinstance(error, _Rejection):
            error_type, reason = error.name, str(error)
        elif isinstance(error, Exception):
            error_type, reason = type(error).__name__, str(error) or type(error).__name__
        else:
            error_type, reason = "Rejected", error
        log.warning("dead letter %s (%s): %s: %s", rec.where, stage, error_type, reason)
        letter = DeadLetter(
            source_topic=rec.topic,
            source_partition=rec.partition,
            source_offset=rec.offset,
            source_timestamp=rec.timestamp,
            raw_key=rec.key,
            raw_value=rec.value,
            error_type=error_type,
            reason=reason,
            stage=stage,
            failed_at=now,
        )
        key = rec.key if rec.key is not None else rec.where.encode()
        headers = ((HEADER.SOURCE, rec.where.encode()),)
        return Output(self.topics.dead_letters, key, self.serde.encode(letter), headers)

    def _dead(
        self, rec: RawRecord, now: datetime, stage: str, error_type: str, reason: str
    ) -> RoutePlan:
        letter = self.dead_letter(rec, now, stage, _Rejection(error_type, reason))
        return RoutePlan((letter,), None, dead_letter=True)


class _Rejection(Exception):
    """A named reason to dead-letter a record that raised nothing."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name = name


def _id_field(policy: Policy, event: SourceEvent) -> str:
    return policy.source(event.source).event_id_field
