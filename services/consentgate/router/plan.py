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

import io
import logging
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import fastavro

from consentgate.consent.timeline import Timeline
from consentgate.errors import ConsentgateError, DecodeError
from consentgate.models.consent import ConsentTimeline
from consentgate.models.records import DeadLetter, DecisionRecord, ProvisionRecord
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

_DECISION_SCHEMA = DecisionRecord.avro_name
_PROVISION_SCHEMA = ProvisionRecord.avro_name


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
        timeline_memory: int = 256,
    ) -> None:
        self.policy = policy
        self.serde = serde
        self.keys = keys
        self.topics = topics or OutputTopics()
        self._provided: dict[str, None] = {}
        self._provision_memory = provision_memory
        self._timelines: OrderedDict[bytes, Timeline] = OrderedDict()
        self._timeline_memory = timeline_memory
        for source in policy.sources:
            if source.schema_name not in SINK_SCHEMAS:
                raise ConsentgateError(
                    f"source {source.name}: no sink schema for {source.schema_name}"
                )
        # what every event of a source, and every record of a sink, has in common
        self._sink_schema = {s.name: SINK_SCHEMAS[s.schema_name] for s in policy.sources}
        self._id_field = {s.name: s.event_id_field for s in policy.sources}
        self._sink_headers = {sink.name: _sink_headers(sink) for sink in policy.sinks}
        self._version_header = (HEADER.POLICY_VERSION, policy.version.encode())
        self._decisions = _DecisionEncoder(serde)

    # -- consent ------------------------------------------------------------------------
    def timeline(self, raw: bytes | None) -> Timeline | None:
        """The subject's timeline from the consent view's bytes (None: no record / erased).

        Raises DecodeError for unreadable consent (the caller denies as consent_unreadable).
        """
        if raw is None:
            return None
        # The view holds each subject's record as bytes; the same bytes always decode to the
        # same (immutable) Timeline, so a subject's consecutive events share one: a bounded
        # LRU keyed by the bytes themselves (a changed record is other bytes: a miss). Kept
        # small on purpose: a cached Timeline is ~8 KB of GC-tracked objects, and thousands
        # of them cost more in garbage collection than the hits save when most subjects
        # have one event (measured with the case's data); a burst of one subject still hits.
        if self._timeline_memory <= 0 or not isinstance(raw, bytes):
            return Timeline(self.serde.decode_model(raw, ConsentTimeline))
        cache = self._timelines
        timeline = cache.get(raw)
        if timeline is not None:
            cache.move_to_end(raw)
            return timeline
        timeline = Timeline(self.serde.decode_model(raw, ConsentTimeline))
        cache[raw] = timeline
        if len(cache) > self._timeline_memory:
            cache.popitem(last=False)
        return timeline

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
        event_id = event.fields[self._id_field[event.source]]
        where = rec.where.encode()
        for sink, decision in decisions:
            if decision.allowed:
                outputs.extend(self._deliver(rec, event, sink, decision, now, event_id, where))
        outputs.append(self._decision(rec, event, decisions, consent, now, event_id, where))
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

    def _deliver(  # noqa: PLR0917 - private, per-event values computed once by plan()
        self,
        rec: RawRecord,
        event: SourceEvent,
        sink: Sink,
        decision: Decision,
        now: datetime,
        event_id: Any,
        where: bytes,
    ) -> list[Output]:
        evidence = decision.evidence
        if evidence is None:  # an allowed decision always has evidence
            raise ConsentgateError(f"allowed decision without evidence for {sink.name}")
        value = project(event, sink, evidence, self.keys)
        value["evidence"] = {
            "consent_change_id": evidence.change_id,
            "consent_notice_version": evidence.notice_version,
            "consent_method": str(evidence.method),
            "policy_version": self.policy.version,
            "source_topic": rec.topic,
            "source_partition": rec.partition,
            "source_offset": rec.offset,
            "event_id": event_id,
            "decided_at": now,
        }
        key = value["subject_key"] if value["subject_key"] is not None else event.event_id
        headers = (
            *self._sink_headers[sink.name],
            (HEADER.EVENT_ID, str(event.event_id).encode()),
            self._version_header,
            (HEADER.CONSENT_CHANGE, evidence.change_id.encode()),
            (HEADER.SOURCE, where),
        )
        out = [
            Output(
                sink.topic,
                str(key).encode(),
                self.serde.encode(value, self._sink_schema[event.source]),
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
        first_event_id = value["evidence"]["event_id"]
        # the ProvisionRecord model's dict (every value here is already valid: policy,
        # validated event, consent record), encoded without a model round trip
        record = {
            "provision_id": pid,
            "provision_date": day,
            "recipient_id": recipient.id,
            "recipient_name": recipient.name,
            "recipient_address": recipient.address,
            "recipient_country": recipient.country,
            "subject_id": event.subject_id,
            "subject_key": value["subject_key"],
            "sink": sink.name,
            "purpose": sink.purpose,
            "data_items": list(sink.fields),
            "consent_change_id": evidence.change_id,
            "consent_notice_version": evidence.notice_version,
            "consent_method": str(evidence.method),
            "consent_confirmed_at": now,
            "first_event_id": (
                first_event_id
                if isinstance(first_event_id, uuid.UUID)
                else uuid.UUID(str(first_event_id))
            ),
            "policy_version": self.policy.version,
        }
        return Output(
            self.topics.provisions, pid.encode(), self.serde.encode(record, _PROVISION_SCHEMA)
        )

    def _remember(self, pid: str) -> None:
        if len(self._provided) >= self._provision_memory:
            self._provided.pop(next(iter(self._provided)))
        self._provided[pid] = None

    def _decision(  # noqa: PLR0917 - private, per-event values computed once by plan()
        self,
        rec: RawRecord,
        event: SourceEvent,
        decisions: list[tuple[Sink, Decision]],
        consent: Timeline | None,
        now: datetime,
        event_id: Any,
        where: bytes,
    ) -> Output:
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
        }
        return Output(
            self.topics.decisions,
            str(event_id).encode(),
            self._decisions.encode(record, decisions),
            ((HEADER.SOURCE, where),),
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


def _sink_headers(sink: Sink) -> tuple[tuple[str, bytes], ...]:
    """The headers every record of ``sink`` starts with."""
    if sink.recipient is None:
        return ((HEADER.PURPOSE, sink.purpose.encode()),)
    return ((HEADER.PURPOSE, sink.purpose.encode()), (HEADER.RECIPIENT, sink.recipient.encode()))


def _avro_long(n: int) -> bytes:
    """Avro's binary encoding of a long: zig-zag, then base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


class _DecisionEncoder:
    """DecisionRecord bytes, with each distinct sink outcome encoded once.

    A decision carries one outcome per sink (42 with the case's policy), and nearly all of
    them repeat from event to event (sink, denied, reason, no change id). The record is
    encoded by the serde with an empty ``outcomes`` array, which is its last field, and the
    array is spliced in: Avro writes an array as one block, ``count`` + items + ``0``, and
    an empty one as ``0``. Each outcome's bytes come from fastavro with the array's item
    schema; those without a change id are kept. The splice is checked once against the
    serde's encoding of the whole record; if the schema does not have this shape, or the
    check fails, every record goes through the serde as a whole.
    """

    def __init__(self, serde: Serde) -> None:
        self._serde = serde
        self._items: Any = None
        self._checked = False
        self._cache: dict[tuple[str, bool, ReasonCode], bytes] = {}
        field = serde.repository.current(_DECISION_SCHEMA).schema["fields"][-1]
        array = field.get("type")
        if (
            field.get("name") == "outcomes"
            and isinstance(array, dict)
            and array.get("type") == "array"
            and isinstance(array.get("items"), dict)
        ):
            self._items = fastavro.parse_schema(array["items"])

    def encode(
        self, record: Mapping[str, Any], decisions: Sequence[tuple[Sink, Decision]]
    ) -> bytes:
        if self._items is None or not decisions:
            return self._whole(record, decisions)
        try:
            data = self._spliced(record, decisions)
        except Exception:  # the whole-record encoding below raises what is wrong, if anything
            log.debug("decision record: spliced encoding failed", exc_info=True)
            return self._whole(record, decisions)
        if self._checked and data is not None:
            return data
        whole = self._whole(record, decisions)
        if data == whole:
            self._checked = True
        else:
            log.warning("decision records: spliced encoding differs, encoding them whole")
            self._items = None
        return whole

    def _spliced(
        self, record: Mapping[str, Any], decisions: Sequence[tuple[Sink, Decision]]
    ) -> bytes | None:
        head = self._serde.encode({**record, "outcomes": []}, _DECISION_SCHEMA)
        if head[-1:] != b"\x00":  # not an empty array at the end: not this shape
            return None
        parts = [head[:-1], _avro_long(len(decisions))]
        cache = self._cache
        for sink, decision in decisions:
            if decision.change_id is not None:
                parts.append(self._write(_outcome(sink, decision)))
                continue
            key = (sink.name, decision.allowed, decision.reason)
            data = cache.get(key)
            if data is None:
                data = cache[key] = self._write(_outcome(sink, decision))
            parts.append(data)
        parts.append(b"\x00")
        return b"".join(parts)

    def _whole(
        self, record: Mapping[str, Any], decisions: Sequence[tuple[Sink, Decision]]
    ) -> bytes:
        outcomes = [_outcome(sink, d) for sink, d in decisions]
        return self._serde.encode({**record, "outcomes": outcomes}, _DECISION_SCHEMA)

    def _write(self, outcome: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self._items, outcome)
        return buf.getvalue()


def _outcome(sink: Sink, decision: Decision) -> dict[str, Any]:
    return {
        "sink": sink.name,
        "allowed": decision.allowed,
        "reason": str(decision.reason),
        "evidence_change_id": decision.change_id,
    }
