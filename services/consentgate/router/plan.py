"""The router's pure core: from one raw record (and the subject's consent) to the records to
write. No I/O, no clock: the worker decodes nothing itself, it asks this and produces.

For every raw record exactly one of:
- a dead letter (undecodable bytes, wrong record type, invalid event: missing ids or time, or
  an event time beyond the clock skew), or
- one decision record holding every sink's outcome, plus, for each allowed sink, the
  projected record and, for partner sinks, a provision record (once per subject, recipient
  and day within this process; the provision id is deterministic, so repeats are idempotent).

A partner sink's record carries recipient-scoped identifiers only (see
:mod:`~consentgate.router.records`): its ``cg-event-id`` header, and its key where the sink
drops subject ids, are the event's scoped id for that recipient, and it has no ``cg-source``
header. The decision and the provision keep the real event id and source coordinates.

``plan`` is the fast path: decisions from :mod:`~consentgate.router.verdicts` (exact per
window of the timeline) and records spliced from parts (:mod:`~consentgate.router.records`).
``plan_uncached`` computes the same plan from scratch: decide_all, the serde on whole
values, no memory written. The loop compares the two on a sample (``plan.outputs ==
shadow.outputs``, same ``now``): see :meth:`Router.plan_uncached`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import cast

from consentgate.consent.intervals import Evidence
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
    subject_key,
)
from consentgate.router.avro import FastRecord
from consentgate.router.outputs import HEADER, Output, OutputTopics
from consentgate.router.records import (
    DecisionRecords,
    EventParts,
    PseudonymMemo,
    SinkRecords,
    decision_value,
    outcome,
    provision_value,
    sink_value,
)
from consentgate.router.verdicts import Decisions, Verdict, VerdictMemory
from consentgate.serde import Serde

__all__ = [
    "SINK_SCHEMAS",
    "NamedRejection",
    "Parsed",
    "RawRecord",
    "RoutePlan",
    "Router",
    "ShadowMismatch",
]

log = logging.getLogger(__name__)

SINK_SCHEMAS = {
    "dev.consentgate.v1.BrowsingEvent": "dev.consentgate.v1.BrowsingSinkRecord",
    "dev.consentgate.v1.DerivedScore": "dev.consentgate.v1.ScoreSinkRecord",
}
"""The sink record schema of each source schema."""

_DECISION_SCHEMA = DecisionRecord.avro_name
_PROVISION_SCHEMA = ProvisionRecord.avro_name
_PID_MEMORY = 65_536


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
    """Decides and projects; holds the policy, serde and pseudonym keys, and memories that
    never change an answer: decoded timelines, verdicts, pseudonyms, encoded parts, and the
    provision ids already written today."""

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
        # subject (or the record's bytes) -> (the record's bytes, its timeline)
        self._timelines: OrderedDict[bytes, tuple[bytes, Timeline]] = OrderedDict()
        self._timeline_memory = timeline_memory
        for source in policy.sources:
            if source.schema_name not in SINK_SCHEMAS:
                raise ConsentgateError(
                    f"source {source.name}: no sink schema for {source.schema_name}"
                )
        # what every event of a source, and every record of a sink, has in common
        self._sources = {s.topic: s for s in reversed(policy.sources)}  # the first one wins
        self._sink_schema = {s.name: SINK_SCHEMAS[s.schema_name] for s in policy.sources}
        self._id_field = {s.name: s.event_id_field for s in policy.sources}
        self._sink_headers = {sink.name: _sink_headers(sink) for sink in policy.sinks}
        self._version_header = (HEADER.POLICY_VERSION, policy.version.encode())
        self._clock_skew = policy.defaults.clock_skew
        # the fast path's memories
        # an entry per subject (holding its timeline): as many as the timelines kept, or
        # subjects cycling through the timeline memory would never find their verdicts
        self._verdicts = VerdictMemory(policy.defaults, timelines=max(4096, timeline_memory))
        self._memo = PseudonymMemo(keys)
        self._pids: dict[tuple[str, str, date], str] = {}
        self._sink_records = {
            s.name: SinkRecords(
                serde, self._sink_schema[s.name], policy.sinks_for(s.name), policy.version
            )
            for s in policy.sources
        }
        self._decisions = DecisionRecords(serde, _DECISION_SCHEMA)
        self._provisions = FastRecord(serde, _PROVISION_SCHEMA)

    # -- consent ------------------------------------------------------------------------
    def timeline(self, raw: bytes | None, subject: bytes | None = None) -> Timeline | None:
        """The subject's timeline from the consent view's bytes (None: no record / erased).
        ``subject``: the view's key of the record (the loop passes it; see below).

        Raises DecodeError for unreadable consent (the caller denies as consent_unreadable).
        """
        if raw is None:
            return None
        # The view holds each subject's record as bytes; the same bytes always decode to the
        # same (immutable) Timeline, so a subject's consecutive events share one: a bounded
        # LRU keyed by the subject (else by the bytes themselves) holding the bytes it
        # decoded: other bytes (the subject's record changed) are a miss and replace the
        # subject's entry. (Keyed by the bytes, each superseded record stayed until
        # ``timeline_memory`` newer ones pushed it out, though the view never hands it out
        # again: ~16 KB more per consent change, for hours in bench/soak.py.) A cached
        # Timeline is ~8 KB of GC-tracked objects, and thousands of them cost more in
        # garbage collection than the hits save when most subjects have one event (measured
        # with the case's data); a burst of one subject still hits.
        if self._timeline_memory <= 0 or not isinstance(raw, bytes):
            return Timeline(self.serde.decode_model(raw, ConsentTimeline))
        cache = self._timelines
        key = raw if subject is None else subject
        held = cache.get(key)
        if held is not None and (held[0] is raw or held[0] == raw):
            cache.move_to_end(key)
            return held[1]
        timeline = Timeline(self.serde.decode_model(raw, ConsentTimeline))
        cache[key] = (raw, timeline)
        cache.move_to_end(key)
        if len(cache) > self._timeline_memory:
            cache.popitem(last=False)
        return timeline

    # -- routing ------------------------------------------------------------------------
    def parse(self, rec: RawRecord, now: datetime) -> Parsed | RoutePlan:
        """Decode and validate a raw record: the event, or the plan of its dead letter."""
        source = self._sources.get(rec.topic)
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
        problem = event.problem(now, self._clock_skew)
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

        ``override`` (consent_state_stale, consent_unreadable, erased, misrouted) denies
        every sink with that reason: fail closed.
        """
        sinks = self.policy.sinks_for(parsed.event.source)
        verdict = self._verdicts.verdict(parsed.event, consent, sinks, now, override)
        return self._build(parsed, verdict.decisions, consent, now, verdict)

    def plan_uncached(
        self,
        parsed: Parsed,
        consent: Timeline | None,
        now: datetime,
        *,
        override: ReasonCode | None = None,
        remember: bool = False,
    ) -> RoutePlan:
        """The same plan as :meth:`plan`, computed with no memory: decide_all, project and
        the serde on whole records, the pseudonym keys themselves. For a sampled shadow check.

        It reads the memory of provisions already written but, unless ``remember``, does
        not add to it. So called first, then ``plan`` with the same arguments, both give
        equal ``outputs`` and ``decisions``, and any difference is a bug in a fast path: the
        loop should stop without committing. (Called after ``plan``, it would find the
        provisions ``plan`` just wrote remembered and leave them out.) :meth:`plan_checked`
        does exactly that.
        """
        event = parsed.event
        sinks = self.policy.sinks_for(event.source)
        if override is not None:
            denied = Decision.deny(override)
            decisions = tuple((s, denied) for s in sinks)
        else:
            decisions = tuple(decide_all(event, consent, sinks, now, self.policy.defaults))
        return self._build(parsed, decisions, consent, now, None, remember=remember)

    def plan_checked(
        self,
        parsed: Parsed,
        consent: Timeline | None,
        now: datetime,
        *,
        override: ReasonCode | None = None,
    ) -> RoutePlan:
        """``plan``, checked against ``plan_uncached`` (computed first): for a sampled shadow
        check. Raises ShadowMismatch (nothing remembered from this event) if they differ."""
        shadow = self.plan_uncached(parsed, consent, now, override=override)
        plan = self.plan(parsed, consent, now, override=override)
        if plan.outputs != shadow.outputs or plan.decisions != shadow.decisions:
            raise ShadowMismatch(f"{parsed.rec.where}: the fast plan differs from the uncached")
        return plan

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

    def _build(
        self,
        parsed: Parsed,
        decisions: tuple[tuple[Sink, Decision], ...],
        consent: Timeline | None,
        now: datetime,
        verdict: Verdict | None,
        *,
        remember: bool = True,
    ) -> RoutePlan:
        """The records of ``decisions``: fast (``verdict`` given: plan) or from whole values."""
        rec, event = parsed.rec, parsed.event
        parts = EventParts(
            event,
            event.fields[self._id_field[event.source]],
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            now=now,
            id_field=self._id_field[event.source],
        )
        where = rec.where.encode()
        outputs: list[Output] = []
        if verdict is not None:
            self._fast_sinks(outputs, parts, verdict, where, remember=remember)
        else:
            self._whole_sinks(outputs, parts, decisions, where, remember=remember)
        head = decision_value(
            parts, self.policy.version, consent.version if consent is not None else None, None
        )
        if verdict is not None:
            if verdict.outcomes is None:
                verdict.outcomes = self._decisions.outcomes(decisions)
            value = self._decisions.encode(head, decisions, verdict.outcomes)
        else:
            head["outcomes"] = [outcome(sink, d) for sink, d in decisions]
            value = self.serde.encode(head, _DECISION_SCHEMA)
        outputs.append(
            Output(
                self.topics.decisions,
                str(parts.event_id).encode(),
                value,
                ((HEADER.SOURCE, where),),
            )
        )
        return RoutePlan(tuple(outputs), event.subject_id, decisions)

    def _whole_sinks(
        self,
        outputs: list[Output],
        parts: EventParts,
        decisions: Decisions,
        where: bytes,
        *,
        remember: bool,
    ) -> None:
        """The allowed sinks' records (and provisions) of ``decisions``, each from its whole
        value through the serde, with the pseudonym keys themselves (partner records: the
        scoped event id computed from them, no source header)."""
        event, keys = parts.event, self.keys
        schema = self._sink_schema[event.source]
        for sink, evidence, skey in _granted(event, decisions, keys):
            value = self.serde.encode(
                sink_value(parts, sink, evidence, keys, self.policy.version), schema
            )
            source: tuple[tuple[str, bytes], ...]
            if sink.recipient is None:
                event_id, source = str(event.event_id), ((HEADER.SOURCE, where),)
            else:
                event_id, source = str(keys.scoped_event_id(sink.recipient, parts.event_id)), ()
            key = skey if skey is not None else event_id
            headers = (
                *self._sink_headers[sink.name],
                (HEADER.EVENT_ID, event_id.encode()),
                self._version_header,
                (HEADER.CONSENT_CHANGE, evidence.change_id.encode()),
                *source,
            )
            outputs.append(Output(sink.topic, key.encode(), value, headers))
            if sink.recipient is not None:
                provision = self._provision(parts, sink, evidence, skey, False, remember)
                if provision is not None:
                    outputs.append(provision)

    def _fast_sinks(
        self,
        outputs: list[Output],
        parts: EventParts,
        verdict: Verdict,
        where: bytes,
        *,
        remember: bool,
    ) -> None:
        """The allowed sinks' records (and provisions) of ``verdict``, from the parts kept
        with it: the same records as the uncached path writes."""
        event, keys = parts.event, self._memo
        allowed = verdict.allowed
        if allowed is None or (allowed and allowed[0].subject != event.subject_id):
            allowed = verdict.allowed = self._allowed(event, verdict.decisions, keys)
        records = self._sink_records[event.source]
        event_header = (HEADER.EVENT_ID, str(event.event_id).encode())
        source_header = (HEADER.SOURCE, where)
        for a in allowed:
            sink, recipient = a.sink, a.sink.recipient
            if recipient is None:
                value = records.encode(parts, sink, a.evidence, keys, a.skey, middle=a.middle)
                headers = (*a.head, event_header, *a.tail, source_header)
                key = a.key if a.key is not None else event_header[1]
            else:  # recipient-scoped: one HMAC per event and recipient (kept in parts)
                scoped = parts.scoped_id(keys, recipient)
                value = records.encode(
                    parts, sink, a.evidence, keys, a.skey, middle=a.middle, scoped=scoped
                )
                scoped_id = str(scoped).encode()
                headers = (*a.head, (HEADER.EVENT_ID, scoped_id), *a.tail)
                key = a.key if a.key is not None else scoped_id
            outputs.append(Output(sink.topic, key, value, headers))
            if sink.recipient is not None:
                provision = self._provision(parts, sink, a.evidence, a.skey, True, remember)
                if provision is not None:
                    outputs.append(provision)

    def _allowed(
        self, event: SourceEvent, decisions: Decisions, keys: PseudonymKeys
    ) -> tuple[_Allowed, ...]:
        """What the records of ``decisions``' allowed sinks share for any event of the
        subject answered with them (the same checks as the uncached path)."""
        records = self._sink_records[event.source]
        out = []
        for sink, evidence, skey in _granted(event, decisions, keys):
            out.append(
                _Allowed(
                    cast("str", event.subject_id),  # _granted raised if it were None
                    sink,
                    evidence,
                    skey,
                    str(skey).encode() if skey is not None else None,
                    records.middle(sink, evidence, skey),
                    self._sink_headers[sink.name],
                    (self._version_header, (HEADER.CONSENT_CHANGE, evidence.change_id.encode())),
                )
            )
        return tuple(out)

    def _provision(  # noqa: PLR0917 - private, per-sink values of _build
        self,
        parts: EventParts,
        sink: Sink,
        evidence: Evidence,
        skey: str | None,
        fast: bool,
        remember: bool,
    ) -> Output | None:
        subject, recipient = parts.event.subject_id, sink.recipient
        if recipient is None or subject is None:
            return None  # not a partner delivery
        day = parts.now.date()
        if fast:
            pid = self._pids.get((sink.name, subject, day))
            if pid is None:
                pid = ProvisionRecord.make_id(recipient, subject, sink.name, day)
                if len(self._pids) >= _PID_MEMORY:
                    self._pids.clear()
                self._pids[(sink.name, subject, day)] = pid
        else:
            pid = ProvisionRecord.make_id(recipient, subject, sink.name, day)
        if pid in self._provided:
            return None
        if remember:
            self._remember(pid)
        record = provision_value(
            self.policy, pid, parts, sink=sink, evidence=evidence, subject_key=skey
        )
        data = (
            self._provisions.encode(record)
            if fast
            else self.serde.encode(record, _PROVISION_SCHEMA)
        )
        return Output(self.topics.provisions, pid.encode(), data)

    def remember_provisions(self, ids: Iterable[str]) -> None:
        """Provision ids already written (read back from the provisions topic)."""
        for pid in ids:
            if pid not in self._provided:
                self._remember(pid)

    def forget_provisions(self) -> None:
        """Drop the memory (after an aborted transaction; read them back then)."""
        self._provided.clear()

    def _remember(self, pid: str) -> None:
        if len(self._provided) >= self._provision_memory:
            self._provided.pop(next(iter(self._provided)))
        self._provided[pid] = None

    def dead_letter(
        self, rec: RawRecord, now: datetime, stage: str, error: Exception | str
    ) -> Output:
        """The dead-letter record of ``rec``: raw key and bytes, where, and why."""
        if isinstance(error, DecodeError):
            error_type, reason = type(error).__name__, error.reason
        elif isinstance(error, NamedRejection):
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
        letter = self.dead_letter(rec, now, stage, NamedRejection(error_type, reason))
        return RoutePlan((letter,), None, dead_letter=True)


@dataclass(frozen=True, slots=True)
class _Allowed:
    """An allowed sink of a verdict: what every record of it for the subject shares."""

    subject: str
    sink: Sink
    evidence: Evidence
    skey: str | None
    key: bytes | None  # the record key, unless the sink drops ids (then the event id, scoped
    # to the recipient on a partner sink)
    middle: bytes | None  # SinkRecords.middle
    head: tuple[tuple[str, bytes], ...]  # the sink's headers
    tail: tuple[tuple[str, bytes], ...]  # policy version, consent change


class ShadowMismatch(ConsentgateError):
    """The fast plan of an event differs from its uncached plan: a bug; stop the worker."""


class NamedRejection(Exception):
    """A named reason to dead-letter a record that raised nothing."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name = name


def _sink_headers(sink: Sink) -> tuple[tuple[str, bytes], ...]:
    """The headers every record of ``sink`` starts with."""
    if sink.recipient is None:
        return ((HEADER.PURPOSE, sink.purpose.encode()),)
    return ((HEADER.PURPOSE, sink.purpose.encode()), (HEADER.RECIPIENT, sink.recipient.encode()))


def _granted(
    event: SourceEvent, decisions: Decisions, keys: PseudonymKeys
) -> Iterator[tuple[Sink, Evidence, str | None]]:
    """Each allowed sink of ``decisions`` with its evidence and the subject's key in it (the
    checks both the fast and the uncached path rely on)."""
    subject = event.subject_id
    for sink, decision in decisions:
        if not decision.allowed:
            continue
        evidence = decision.evidence
        if evidence is None:  # an allowed decision always has evidence
            raise ConsentgateError(f"allowed decision without evidence for {sink.name}")
        if subject is None:
            raise ValueError("cannot project an event without a subject id")
        yield sink, evidence, subject_key(sink, subject, evidence, keys)
