"""The independent zero-leak audit: re-check every record in every sink against the consent
history, and account for every raw record.

Independent of the router: it rebuilds each subject's timeline from the append-only
``consent.changes`` log (not from ``consent.state`` or the router's view), finds each sink
record's source event by the coordinates in its evidence (so the subject and event time come
from the raw topic, not from what the sink says), and re-runs the decision rule at the
record's ``decided_at``. It uses none of the router's counters.

A record fails when: its source record is unknown, its event id differs, the rule denies it,
or it carries a field its sink does not list. Accounting fails when a raw record has neither
a decision record nor a dead letter, or a decision misses one of its source's sinks.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consentgate.consent.timeline import Timeline, apply
from consentgate.errors import ConsentgateError, DecodeError
from consentgate.models.consent import ConsentChange
from consentgate.ops.reader import read_topic
from consentgate.policy import Policy, Sink, SourceEvent, decide
from consentgate.policy.project import RESERVED_FIELDS
from consentgate.serde import Serde

__all__ = ["AuditReport", "AuditTopics", "Violation", "run_audit"]

log = logging.getLogger(__name__)

Coords = tuple[str, int, int]


@dataclass(frozen=True)
class AuditTopics:
    changes: str = "consent.changes.v1"
    decisions: str = "consentgate.decisions.v1"
    dead_letters: str = "consentgate.dlq.v1"


@dataclass(frozen=True)
class Violation:
    sink: str
    where: str
    event_id: str
    problem: str


@dataclass
class AuditReport:
    subjects: int = 0
    consent_changes: int = 0
    raw_records: int = 0
    decided: int = 0
    dead_lettered: int = 0
    unaccounted: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    sink_records: Counter[str] = field(default_factory=Counter)
    retractions: Counter[str] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.violations or self.unaccounted or self.incomplete)

    def render(self) -> str:
        lines = [
            "consentgate audit (independent re-check against consent.changes)",
            f"  consent changes read      {self.consent_changes:>10,}"
            f"  ({self.subjects:,} subjects)",
            f"  raw records               {self.raw_records:>10,}",
            f"    with a decision record  {self.decided:>10,}",
            f"    dead-lettered           {self.dead_lettered:>10,}",
            f"    unaccounted             {len(self.unaccounted):>10,}",
            f"    decisions missing sinks {len(self.incomplete):>10,}",
            "",
            f"  {'sink':<40} {'records':>9} {'retractions':>12}",
        ]
        for sink in sorted(set(self.sink_records) | set(self.retractions)):
            lines.append(
                f"  {sink:<40} {self.sink_records[sink]:>9,} {self.retractions[sink]:>12,}"
            )
        lines.append("")
        lines.append(f"  records the decision rule would deny: {len(self.violations)}")
        for v in self.violations[:20]:
            lines.append(f"    {v.sink} {v.where} event {v.event_id}: {v.problem}")
        for where in self.unaccounted[:20]:
            lines.append(f"    unaccounted raw record {where}")
        lines.append(
            "RESULT: " + ("PASS, zero leaks, every input accounted for" if self.ok else "FAIL")
        )
        return "\n".join(lines)


def run_audit(
    kafka_config: dict[str, Any],
    policy: Policy,
    serde: Serde,
    topics: AuditTopics | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Read everything, re-check everything, and say what is wrong."""
    return _Auditor(kafka_config, policy, serde, topics or AuditTopics(), progress).run()


class _Auditor:
    def __init__(
        self,
        conf: dict[str, Any],
        policy: Policy,
        serde: Serde,
        topics: AuditTopics,
        progress: Callable[[str], None] | None,
    ) -> None:
        self.conf, self.policy, self.serde, self.topics = conf, policy, serde, topics
        self.say = progress or log.info
        self.report = AuditReport()
        self.timelines: dict[str, Timeline] = {}
        self.events: dict[Coords, SourceEvent] = {}
        self.bad: set[Coords] = set()

    def run(self) -> AuditReport:
        self._timelines()
        self._raw_events()
        self._account()
        self.say(f"re-checking every record of {len(self.policy.sinks)} sinks")
        for sink in self.policy.sinks:
            self._check_sink(sink)
        return self.report

    def _timelines(self) -> None:
        self.say(f"rebuilding consent timelines from {self.topics.changes}")
        for msg in read_topic(self.conf, self.topics.changes):
            change = self.serde.decode_model(msg.value(), ConsentChange)
            self.timelines[change.subject_id] = apply(self.timelines.get(change.subject_id), change)
            self.report.consent_changes += 1
        self.report.subjects = len(self.timelines)

    def _raw_events(self) -> None:
        for source in self.policy.sources:
            self.say(f"reading raw source {source.topic}")
            for msg in read_topic(self.conf, source.topic):
                coords = (source.topic, msg.partition() or 0, msg.offset() or 0)
                self.report.raw_records += 1
                try:
                    decoded = self.serde.decode(msg.value())
                except DecodeError:
                    self.bad.add(coords)
                    continue
                self.events[coords] = SourceEvent.from_record(source, decoded.value)

    def _coords_of(self, topic: str) -> dict[Coords, set[str]]:
        found: dict[Coords, set[str]] = {}
        for msg in read_topic(self.conf, topic):
            value = self.serde.decode(msg.value()).value
            coords = (value["source_topic"], value["source_partition"], value["source_offset"])
            found.setdefault(coords, set()).update(o["sink"] for o in value.get("outcomes", ()))
        return found

    def _account(self) -> None:
        self.say("accounting: decisions and dead letters")
        decided = self._coords_of(self.topics.decisions)
        dead = self._coords_of(self.topics.dead_letters)
        report = self.report
        for coords in sorted(set(self.events) | self.bad):
            where = f"{coords[0]}[{coords[1]}]@{coords[2]}"
            if coords in decided:
                report.decided += 1
                event = self.events.get(coords)
                wanted = {s.name for s in self.policy.sinks_for(event.source)} if event else set()
                if not wanted <= decided[coords]:
                    report.incomplete.append(where)
            elif coords in dead:
                report.dead_lettered += 1
            else:
                report.unaccounted.append(where)

    def _check_sink(self, sink: Sink) -> None:
        report = self.report
        try:
            for msg in read_topic(self.conf, sink.topic):
                where = f"{sink.topic}[{msg.partition()}]@{msg.offset()}"
                if msg.value() is None:
                    report.retractions[sink.name] += 1
                    continue
                report.sink_records[sink.name] += 1
                value = self.serde.decode(msg.value()).value
                problem = self._problem(sink, value)
                if problem:
                    event_id = str(value["evidence"]["event_id"])
                    report.violations.append(Violation(sink.name, where, event_id, problem))
        except ConsentgateError as exc:
            report.violations.append(Violation(sink.name, sink.topic, "-", str(exc)))

    def _problem(self, sink: Sink, value: dict[str, Any]) -> str | None:
        evidence = value["evidence"]
        coords = (evidence["source_topic"], evidence["source_partition"], evidence["source_offset"])
        event = self.events.get(coords)
        if event is None:
            return "source record not found"
        if str(event.event_id) != str(evidence["event_id"]):
            return f"evidence names event {evidence['event_id']}, source holds {event.event_id}"
        allowed_fields = set(sink.fields) | RESERVED_FIELDS
        extra = sorted(k for k, v in value.items() if v is not None and k not in allowed_fields)
        if extra:
            return f"unlisted fields delivered: {extra}"
        timeline = self.timelines.get(event.subject_id or "")
        decision = decide(event, timeline, sink, evidence["decided_at"], self.policy.defaults)
        if not decision.allowed:
            return f"the rule denies it: {decision.reason}"
        return None
