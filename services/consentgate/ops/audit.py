"""The independent audit: re-judge every sink record from Kafka alone, and account for every
raw record, without trusting the router's decisions, counters or code.

What it reads, each topic from its partitions' low watermarks: the append-only consent
changes (never ``consent.state``), the raw source topics, the decision log, the dead letters,
the provision ledger, and every sink of the current policy and of the past policies it is
given. What it checks (the kinds of :data:`consentgate.ops.audit_html.FINDING_KINDS`):

- **evidence**: a record must carry evidence naming a raw record that exists and holds that
  event (first-party: by topic/partition/offset and event id; partner: by the
  recipient-scoped event id, recomputed from the raw event under the recipient's key); its
  key must be the subject's key in that sink; its consent change id the grant the audit's
  rule finds in force at the event's time; its purpose and recipient those of its sink;
- **leak**: the audit's own rule (:mod:`consentgate.ops.audit_rule`) denies the record on
  the consent changes known when it was decided (less a lag tolerance for the consent view,
  never earlier than the event's own time, so nothing is judged with hindsight);
- **unjudgeable**: the raw record is gone (retention, deleteRecords): never a PASS;
- **retractions**: a record followed by a consent change that takes its grant away must be
  followed by a retraction in its partition; a record after the retraction meant for it;
- **provisions**: each partner delivery has its ledger entry (sink, subject, UTC day of the
  decision) and each ledger entry a delivery;
- **duplicates**: one record per event and sink; **accounting**: each raw record has a
  decision with every sink of the policy, or a dead letter; a sink record the decision log
  says was denied.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.pool
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Message

from consentgate.errors import ConsentgateError, DecodeError
from consentgate.ops.audit_report import AuditReport, SinkStats
from consentgate.ops.audit_rule import RuleChange, SubjectRule
from consentgate.ops.reader import read_topic, watermarks
from consentgate.policy import Policy, PseudonymKeys, Sink, SourceEvent, load_policy
from consentgate.policy.model import SubjectHandling
from consentgate.policy.project import RESERVED_FIELDS
from consentgate.policy.pseudonym import scoped_event_id
from consentgate.serde import Serde

__all__ = [
    "AuditOptions",
    "AuditReport",
    "AuditTopics",
    "parse_sinks",
    "policies_of",
    "run_audit",
]

log = logging.getLogger(__name__)

Coords = tuple[str, int, int]


@dataclass(frozen=True)
class AuditTopics:
    changes: str = "consent.changes.v1"
    decisions: str = "consentgate.decisions.v1"
    dead_letters: str = "consentgate.dlq.v1"
    provisions: str = "consentgate.provisions.v1"


@dataclass(frozen=True)
class AuditOptions:
    """``lag``: how far the router's consent view may trail a change (a change known less
    than this before a decision may be missed, and must then be retracted); ``settle``: a
    change known less than this before the audit started may not be retracted yet (in
    flight, not a finding); ``since``: judge only records decided at or after it;
    ``sinks``: judge only these sink topics or names (all, if empty)."""

    lag: timedelta = timedelta(seconds=5)
    settle: timedelta = timedelta(seconds=30)
    since: datetime | None = None
    sinks: tuple[str, ...] = ()
    past_policies: tuple[Policy, ...] = ()
    workers: int = 1
    """Processes judging the sinks (forked after every other topic was read)."""


@dataclass
class _Raw:
    event: SourceEvent
    key: bytes | None
    coords: Coords

    @property
    def where(self) -> str:
        return f"{self.coords[0]}[{self.coords[1]}]@{self.coords[2]}"


@dataclass
class _Delivery:
    subject: str
    key: bytes | None
    partition: int
    offset: int
    event_time: datetime
    grant_key: tuple[str, str | None]
    extras: tuple[str, ...]
    where: str
    event_id: str


@dataclass
class _Decisions:
    decided: dict[Coords, tuple[tuple[str, ...], frozenset[str]]] = field(default_factory=dict)
    allowed_to: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    denials: Counter[str] = field(default_factory=Counter)
    count: int = 0


@dataclass
class _SinkLog:
    deliveries: list[_Delivery] = field(default_factory=list)
    # (partition, key) -> [(offset, change id or None)]
    retractions: dict[tuple[int, bytes], list[tuple[int, str | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )


def run_audit(
    kafka_config: dict[str, Any],
    policy: Policy,
    serde: Serde,
    topics: AuditTopics | None = None,
    *,
    keys: PseudonymKeys | None = None,
    options: AuditOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Read everything, re-judge everything, and say what is wrong."""
    auditor = _Auditor(
        kafka_config,
        policy,
        serde,
        topics or AuditTopics(),
        keys or PseudonymKeys.from_settings(),
        options or AuditOptions(),
        progress or log.info,
    )
    return auditor.run()


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _appended(msg: Message) -> datetime | None:
    kind, ms = msg.timestamp()
    return datetime.fromtimestamp(ms / 1000, UTC) if kind and ms > 0 else None


def _aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1000, UTC)
    return None


_FORKED: _Auditor | None = None


@contextlib.contextmanager
def _forking(auditor: _Auditor, workers: int) -> Iterator[multiprocessing.pool.Pool]:
    """A pool of ``workers`` processes forked from here, whose children see ``auditor``
    (a fork copies what it has read; no Kafka client may be open at the fork)."""
    global _FORKED  # noqa: PLW0603 - the forked children's view of this auditor
    _FORKED = auditor
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            try:
                yield pool
            finally:
                pool.close()
                pool.join()
    finally:
        _FORKED = None


def _read_decisions() -> _Decisions:
    if _FORKED is None:  # only ever called in a child forked by _Auditor.run
        raise RuntimeError("no auditor to read with")
    return _FORKED.read_decisions()


def _check_share(topics: list[str]) -> tuple[AuditReport, set[tuple[str, str, str]]]:
    if _FORKED is None:  # only ever called in a child forked by _check_in_processes
        raise RuntimeError("no auditor to check with")
    return _FORKED.check_share(topics)


def _note_retraction(msg: Message, log_: _SinkLog) -> None:
    change = dict(msg.headers() or []).get("cg-consent-change-id")
    key = msg.key()
    if isinstance(key, bytes):
        text = change.decode() if isinstance(change, bytes) else change
        log_.retractions[(msg.partition() or 0, key)].append((msg.offset() or 0, text))


class _Auditor:
    def __init__(  # noqa: PLR0917 - built once, by run_audit
        self,
        conf: dict[str, Any],
        policy: Policy,
        serde: Serde,
        topics: AuditTopics,
        keys: PseudonymKeys,
        options: AuditOptions,
        say: Callable[[str], None],
    ) -> None:
        self.conf, self.policy, self.serde, self.topics = conf, policy, serde, topics
        self.keys, self.opt, self.say = keys, options, say
        self.report = AuditReport(cluster=str(conf.get("bootstrap.servers", "")))
        self.rules: dict[str, SubjectRule] = {}
        self.raw: dict[Coords, _Raw] = {}
        self.by_event: dict[str, list[Coords]] = defaultdict(list)
        self.undecodable: set[Coords] = set()
        self.lows: dict[str, dict[int, int]] = {}  # raw topic -> partition -> low watermark
        # recipient -> scoped id -> event id: first of the events the decision log allowed to
        # the recipient; all of the source's events once an id is not found there
        self.scoped: dict[str, dict[str, str]] = {}
        self.complete: set[str] = set()
        self.allowed_to: dict[str, list[str]] = defaultdict(list)
        self.decided: dict[Coords, tuple[tuple[str, ...], frozenset[str]]] = {}
        self.provisions: set[tuple[str, str, str]] = set()
        self.delivered: set[tuple[str, str, str]] = set()
        self.sinks = self._sinks()
        # the fields a declared sink may carry (its own and the reserved ones)
        self._fields = {t: frozenset(s.fields) | RESERVED_FIELDS for t, s in self.sinks.items()}

    # -- reading ------------------------------------------------------------------------
    def run(self) -> AuditReport:
        began = time.monotonic()
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(_forking(self, 1)) if self.opt.workers > 1 else None
            # with workers, the decision log (the largest records) is read in a child
            # forked before any Kafka client exists here, beside the other reads
            pending = pool.apply_async(_read_decisions) if pool is not None else None
            phases = [self._changes, self._raw_sources, self._provisions]
            if pending is None:
                phases.insert(2, self._decisions)
            for phase in phases:
                started = time.monotonic()
                phase()
                self.say(f"  read in {time.monotonic() - started:.1f} s")
            if pending is not None:
                self.say(f"decisions from {self.topics.decisions} (read in a child process)")
                self._take_decisions(pending.get())
        self._account()
        self.say(f"re-judging every record of {len(self.sinks)} sink topics")
        started = time.monotonic()
        sinks = list(self.sinks.values())
        workers = min(self.opt.workers, len(sinks))
        if workers > 1:
            self._check_in_processes(sinks, workers)
        else:
            for sink in sinks:
                self._check_sink(sink)
        self.say(f"  judged in {time.monotonic() - started:.1f} s ({workers} processes)")
        self._check_provisions()
        self.report.took_s = time.monotonic() - began
        return self.report

    def _check_in_processes(self, sinks: list[Sink], workers: int) -> None:
        """Judge the sinks in ``workers`` forked processes, each a share of the topics, on
        copies of what was read (no Kafka client is open at the fork: each closed after its
        read), and merge their reports."""
        shares = [[s.topic for s in sinks[i::workers]] for i in range(workers)]
        with _forking(self, workers) as pool:
            parts = pool.map(_check_share, shares)
        for part, delivered in parts:
            self.report.merge(part)
            self.delivered |= delivered

    def check_share(self, topics: list[str]) -> tuple[AuditReport, set[tuple[str, str, str]]]:
        """In a child: judge ``topics`` into a fresh report (only this share's findings)."""
        mine = {t: self.report.sinks[t] for t in topics}
        self.report = AuditReport(started_at=self.report.started_at, sinks=mine)
        self.delivered = set()
        for topic in topics:
            self._check_sink(self.sinks[topic])
        return self.report, self.delivered

    def _sinks(self) -> dict[str, Sink]:
        """Sink topic -> its sink: the current policy's, then past policies' other topics."""
        found: dict[str, Sink] = {}
        for n, policy in enumerate((self.policy, *self.opt.past_policies)):
            for sink in policy.sinks:
                if sink.topic in found:
                    continue
                if self.opt.sinks and not {sink.topic, sink.name} & set(self.opt.sinks):
                    continue
                found[sink.topic] = sink
                self.report.sinks[sink.topic] = SinkStats(
                    sink.topic, sink.name, sink.purpose, sink.recipient, declared=n == 0
                )
        self.report.read["policies"] = 1 + len(self.opt.past_policies)
        return found

    def _changes(self) -> None:
        self.say(f"reading consent changes from {self.topics.changes}")
        for msg in read_topic(self.conf, self.topics.changes):
            value = msg.value()
            if value is None:
                continue
            try:
                datum = self.serde.decode(value).value
                change = RuleChange.from_datum(datum, _appended(msg))
                subject = str(datum["subject_id"])
            except (DecodeError, KeyError, ValueError) as exc:
                self.report.notes.append(
                    f"consent change {self.topics.changes}[{msg.partition()}]@{msg.offset()} "
                    f"unreadable, skipped: {exc}"
                )
                continue
            self.rules.setdefault(subject, SubjectRule()).add(change)
            self.report.read["consent_changes"] += 1
        self.report.read["subjects"] = len(self.rules)

    def _raw_sources(self) -> None:
        sources = {s.topic: s for p in (self.policy, *self.opt.past_policies) for s in p.sources}
        for topic, source in sources.items():
            self.say(f"reading raw source {topic}")
            self.lows[topic] = {p: low for p, (low, _) in watermarks(self.conf, topic).items()}
            for msg in read_topic(self.conf, topic):
                coords = (topic, msg.partition() or 0, msg.offset() or 0)
                self.report.read["raw_records"] += 1
                try:
                    decoded = self.serde.decode(msg.value())
                except DecodeError:
                    self.undecodable.add(coords)
                    continue
                event = SourceEvent.from_record(source, decoded.value)
                self.raw[coords] = _Raw(event, msg.key(), coords)
                if event.event_id:
                    self.by_event[str(event.event_id)].append(coords)

    def _decisions(self) -> None:
        self.say(f"reading decisions from {self.topics.decisions}")
        self._take_decisions(self.read_decisions())

    def read_decisions(self) -> _Decisions:
        """The decision log, compact: per raw record the sink names it has an outcome for
        (one shared tuple per policy shape) and those allowed; partner deliveries by
        recipient; denials by reason."""
        got = _Decisions()
        recipient_of = {s.name: s.recipient for s in self.sinks.values() if s.recipient}
        shapes: dict[tuple[str, ...], tuple[str, ...]] = {}
        for msg in read_topic(self.conf, self.topics.decisions):
            value = self.serde.decode(msg.value()).value
            coords = (value["source_topic"], value["source_partition"], value["source_offset"])
            outcomes = value.get("outcomes", ())
            names = tuple(o["sink"] for o in outcomes)
            allowed = frozenset(o["sink"] for o in outcomes if o["allowed"])
            got.decided[coords] = (shapes.setdefault(names, names), allowed)
            if len(allowed) < len(names):
                got.denials.update(
                    str(o.get("reason") or "denied") for o in outcomes if not o["allowed"]
                )
            for name in allowed:
                recipient = recipient_of.get(name)
                if recipient is not None:
                    got.allowed_to[f"{recipient}\0{coords[0]}"].append(str(value["event_id"]))
            got.count += 1
        return got

    def _take_decisions(self, got: _Decisions) -> None:
        self.decided = got.decided
        self.allowed_to = got.allowed_to
        self.report.denials.update(got.denials)
        self.report.read["decisions"] += got.count

    def _provisions(self) -> None:
        self.say(f"reading the provision ledger {self.topics.provisions}")
        for msg in read_topic(self.conf, self.topics.provisions):
            if msg.value() is None:
                continue
            v = self.serde.decode(msg.value()).value
            day = v["provision_date"]
            self.provisions.add((v["sink"], v["subject_id"], str(day)))
            self.report.provisions_per_recipient[v["recipient_id"]] += 1
            self.report.read["provisions"] += 1

    def _account(self) -> None:
        self.say(f"accounting: decisions and dead letters of {self.topics.dead_letters}")
        dead: set[Coords] = set()
        for msg in read_topic(self.conf, self.topics.dead_letters):
            v = self.serde.decode(msg.value()).value
            dead.add((v["source_topic"], v["source_partition"], v["source_offset"]))
            self.report.read["dead_letters"] += 1
        for coords in sorted(set(self.raw) | self.undecodable):
            where = f"{coords[0]}[{coords[1]}]@{coords[2]}"
            decision = self.decided.get(coords)
            if decision is None:
                if coords not in dead:
                    self.report.find("unaccounted", where=where, detail="no decision, no letter")
                continue
            raw = self.raw.get(coords)
            wanted = {s.name for s in self.policy.sinks_for(raw.event.source)} if raw else set()
            missing = wanted - set(decision[0])
            if missing:
                self.report.find(
                    "incomplete_decision", where=where, detail=f"no outcome for {sorted(missing)}"
                )

    # -- sinks --------------------------------------------------------------------------
    def _gone(self, topic: str, partition: int | None = None, offset: int | None = None) -> bool:
        """Whether the raw record may have been removed (retention, deleteRecords): the raw
        topic is unknown, or its head (of ``partition``, before ``offset``) is gone."""
        lows = self.lows.get(topic)
        if lows is None:
            return True
        if partition is None or offset is None:
            return any(low > 0 for low in lows.values())
        return offset < lows.get(partition, 0)

    def _source_of(  # noqa: PLR0911 - one return per way evidence can fail
        self, sink: Sink, value: dict[str, Any]
    ) -> tuple[_Raw | None, str, bool]:
        """The raw record a sink record's evidence names; or None, why not, and whether the
        record may simply have expired (unjudgeable) rather than never existed."""
        ev = value["evidence"]
        topic = ev["source_topic"]
        if sink.recipient is None:
            if ev.get("source_partition") is None or ev.get("source_offset") is None:
                return None, "evidence has no source coordinates", False
            coords = (topic, int(ev["source_partition"]), int(ev["source_offset"]))
            raw = self.raw.get(coords)
            if raw is None:
                gone = self._gone(*coords)
                return None, f"no raw record at {topic}[{coords[1]}]@{coords[2]}", gone
            if str(raw.event.event_id) != str(ev["event_id"]):
                held = raw.event.event_id
                return None, f"evidence names event {ev['event_id']}, the raw holds {held}", False
            return raw, "", False
        if ev.get("source_partition") is not None or ev.get("source_offset") is not None:
            why = "partner evidence carries source coordinates (joinable across recipients)"
            return None, why, False
        event_id = self._find_scoped(sink.recipient, topic, str(ev["event_id"]))
        if event_id is None:
            why = f"no raw event of {topic} has the scoped id {ev['event_id']}"
            return None, why, self._gone(topic)
        # found through the decision log, the raw record itself may be gone since
        located = next((c for c in self.by_event.get(event_id, ()) if c[0] == topic), None)
        if located is None:
            why = f"the raw event {ev['event_id']} names (scoped) is no longer in {topic}"
            return None, why, self._gone(topic)
        return self.raw[located], "", False

    def _find_scoped(self, recipient: str, topic: str, scoped: str) -> str | None:
        """The raw event id whose id under ``recipient``'s key is ``scoped``. Looked up among
        the events the decision log allowed to the recipient first (one HMAC per delivery);
        only a miss computes the id of every raw event of ``topic`` (a forged record)."""
        name = f"{recipient}\0{topic}"
        table = self.scoped.get(name)
        if table is None:
            table = self.scoped[name] = self._scope(recipient, self.allowed_to.pop(name, []))
        found = table.get(scoped)
        if found is None and name not in self.complete:
            self.complete.add(name)
            every = (e for e, coords in self.by_event.items() if any(c[0] == topic for c in coords))
            table.update(self._scope(recipient, every))
            found = table.get(scoped)
        return found

    def _scope(self, recipient: str, event_ids: Iterable[str]) -> dict[str, str]:
        key = self.keys.key_for(recipient)
        return {str(scoped_event_id(key, e)): e for e in event_ids}

    def _expected_key(self, sink: Sink, subject: str, value: dict[str, Any]) -> bytes | None:
        handling = sink.subject_id
        if handling is SubjectHandling.DROP:
            return None
        if handling is SubjectHandling.KEEP_IF_NAMED_RECIPIENT and sink.recipient is not None:
            return subject.encode()
        return self.keys.pseudonym(sink.key_name, subject).encode()

    def _check_sink(self, sink: Sink) -> None:
        stats = self.report.sinks[sink.topic]
        log_ = _SinkLog()
        seen: dict[str, str] = {}
        try:
            for msg in read_topic(self.conf, sink.topic):
                self._check_record(sink, msg, stats, log_, seen)
        except ConsentgateError as exc:
            self.report.find("unjudgeable", sink=sink.topic, detail=f"cannot read: {exc}")
            return
        self.report.read["sink_records"] += stats.records
        self.report.read["retractions"] += stats.retractions
        self._check_retractions(sink, log_, stats)

    def _check_record(
        self, sink: Sink, msg: Message, stats: SinkStats, log_: _SinkLog, seen: dict[str, str]
    ) -> None:
        rep = self.report
        partition, offset = msg.partition() or 0, msg.offset() or 0
        where = f"{sink.topic}[{partition}]@{offset}"
        if msg.value() is None:
            stats.retractions += 1
            _note_retraction(msg, log_)
            return
        stats.records += 1
        got = self._evidence(sink, msg, where)
        if got is None:
            return
        value, ev, decided_at = got
        if self.opt.since is not None and decided_at < self.opt.since:
            return
        rep.per_bucket[sink.topic][_ms(decided_at) // 1000 // rep.bucket_seconds] += 1
        stats.policy_versions.add(str(ev.get("policy_version")))
        raw, why, gone = self._source_of(sink, value)
        if raw is None:
            if gone:
                why += " (the raw topic's head is gone: the evidence expired)"
                rep.find("unjudgeable", where=where, sink=sink.topic, detail=why)
            else:
                rep.find("evidence_mismatch", where=where, sink=sink.topic, detail=why)
            return
        event = raw.event
        subject = str(event.subject_id or "")
        event_id = str(event.event_id)
        if event_id in seen:
            rep.find(
                "duplicate",
                where=where,
                sink=sink.topic,
                event_id=event_id,
                subject=subject,
                detail=f"also at {seen[event_id]}",
            )
        seen.setdefault(event_id, where)
        problem = self._evidence_problem(sink, value, raw, msg.key())
        if problem:
            rep.find(
                "evidence_mismatch",
                where=where,
                sink=sink.topic,
                event_id=event_id,
                subject=subject,
                detail=problem,
            )
        if event.event_time is None:
            rep.find("leak", where=where, sink=sink.topic, event_id=event_id, detail="no time")
            return
        self._judge(sink, value, raw, decided_at, where)
        decision = self.decided.get(raw.coords)
        if decision is not None and sink.name in decision[0] and sink.name not in decision[1]:
            rep.find(
                "decision_mismatch",
                where=where,
                sink=sink.topic,
                event_id=event_id,
                subject=subject,
                detail="the decision log says denied",
            )
        if sink.recipient is not None:
            self.delivered.add((sink.name, subject, str(decided_at.date())))
            if (sink.name, subject, str(decided_at.date())) not in self.provisions:
                rep.find(
                    "delivery_without_provision",
                    where=where,
                    sink=sink.topic,
                    event_id=event_id,
                    subject=subject,
                    detail=f"no ledger entry for {decided_at.date()}",
                )
        log_.deliveries.append(
            _Delivery(
                subject,
                msg.key(),
                partition,
                offset,
                event.event_time,
                (sink.purpose, sink.recipient),
                tuple(sink.extra_purposes),
                where,
                event_id,
            )
        )

    def _evidence(
        self, sink: Sink, msg: Message, where: str
    ) -> tuple[dict[str, Any], dict[str, Any], datetime] | None:
        """The record's value, evidence and decision time; None (and a finding) if it has no
        readable evidence."""
        try:
            value = self.serde.decode(msg.value()).value
        except DecodeError as exc:
            self.report.find("no_evidence", where=where, sink=sink.topic, detail=str(exc))
            return None
        ev = value.get("evidence")
        decided_at = _aware(ev.get("decided_at")) if isinstance(ev, dict) else None
        if not isinstance(ev, dict) or not ev.get("consent_change_id") or decided_at is None:
            self.report.find("no_evidence", where=where, sink=sink.topic, detail="no evidence")
            return None
        return value, ev, decided_at

    def _evidence_problem(  # noqa: PLR0911 - one return per evidence check
        self, sink: Sink, value: dict[str, Any], raw: _Raw, key: bytes | None
    ) -> str | None:
        subject = str(raw.event.subject_id or "")
        if raw.key is not None and raw.key != subject.encode():
            return "the raw record's key is not its subject"
        expected = self._expected_key(sink, subject, value)
        if expected is not None and key != expected:
            return "the record's key is not the subject's key in this sink"
        if value.get("purpose") not in (None, sink.purpose):
            return f"purpose tag {value.get('purpose')!r}, the sink's purpose is {sink.purpose!r}"
        if value.get("recipient") != sink.recipient:
            return f"recipient tag {value.get('recipient')!r}, the sink's is {sink.recipient!r}"
        if expected is not None and value.get("subject_key") not in (None, expected.decode()):
            return "subject_key is not the subject's key in this sink"
        if sink.topic in self.report.sinks and self.report.sinks[sink.topic].declared:
            allowed = self._fields[sink.topic]
            extra = sorted(k for k, v in value.items() if v is not None and k not in allowed)
            if extra:
                return f"fields the sink does not list: {extra}"
        written = value.get("event_id") if sink.recipient is None else None
        if written is not None and str(written) != str(raw.event.event_id):
            return "the event_id field differs from the raw event's"
        return None

    def _judge(
        self, sink: Sink, value: dict[str, Any], raw: _Raw, decided_at: datetime, where: str
    ) -> None:
        event = raw.event
        if event.event_time is None:  # checked by the caller; keeps the types honest
            return
        subject = str(event.subject_id or "")
        rule = self.rules.get(subject)
        if rule is None:
            self.report.find(
                "leak",
                where=where,
                sink=sink.topic,
                event_id=str(event.event_id),
                subject=subject,
                detail="no consent record",
            )
            return
        known_at = min(decided_at, max(event.event_time, decided_at - self.opt.lag))
        verdict = rule.judge(
            event_time=event.event_time,
            now=decided_at,
            known_at=known_at,
            key=(sink.purpose, sink.recipient),
            extra_purposes=sink.extra_purposes,
            signals=event.signals,
            opt_out_signals=sink.opt_out_signals,
            clock_skew=self.policy.defaults.clock_skew,
        )
        if not verdict.allowed:
            self.report.find(
                "leak",
                where=where,
                sink=sink.topic,
                event_id=str(event.event_id),
                subject=subject,
                detail=f"the rule denies it: {verdict.reason}",
            )
            return
        if verdict.grant_id != value["evidence"]["consent_change_id"]:
            self.report.find(
                "evidence_mismatch",
                where=where,
                sink=sink.topic,
                event_id=str(event.event_id),
                subject=subject,
                detail=f"allowed on {value['evidence']['consent_change_id']}, "
                f"the grant in force then is {verdict.grant_id}",
            )

    def _check_retractions(self, sink: Sink, log_: _SinkLog, stats: SinkStats) -> None:
        if sink.subject_id is SubjectHandling.DROP:
            return
        cutoff = self.report.started_at - self.opt.settle
        missing: set[tuple[str, str]] = set()
        for d in log_.deliveries:
            rule = self.rules.get(d.subject)
            if rule is None or d.key is None:
                continue
            marks = log_.retractions.get((d.partition, d.key), [])
            ends = rule.ends_after(d.grant_key, d.extras, d.event_time)
            ids = {c.change_id for c in ends}
            # a retraction meant for this record (its change ends the grant it relied on)
            # written before it: the record came after its retraction
            for offset, change_id in marks:
                if offset < d.offset and change_id in ids:
                    self.report.find(
                        "after_retraction",
                        where=d.where,
                        sink=sink.topic,
                        event_id=d.event_id,
                        subject=d.subject,
                        detail=f"retracted at offset {offset} ({change_id})",
                    )
                    break
            due = [c for c in ends if c.known <= cutoff]
            if not ends:
                continue
            if not due:
                stats.in_flight += 1
                continue
            retracted = any(offset > d.offset for offset, _ in marks)
            if not retracted and (d.subject, due[0].change_id) not in missing:
                missing.add((d.subject, due[0].change_id))
                self.report.find(
                    "missing_retraction",
                    where=d.where,
                    sink=sink.topic,
                    event_id=d.event_id,
                    subject=d.subject,
                    detail=f"{due[0].action.value} {due[0].change_id} is not followed by "
                    "a retraction",
                )

    def _check_provisions(self) -> None:
        names = {s.name for s in self.sinks.values() if s.recipient is not None}
        for sink, subject, day in sorted(self.provisions - self.delivered):
            if sink not in names:
                continue
            if self.opt.since is not None and day < str(self.opt.since.date()):
                continue
            self.report.find(
                "provision_without_delivery",
                sink=sink,
                subject=subject,
                detail=f"ledger entry of {day} with no record in the sink",
            )


def parse_sinks(values: Sequence[str] | None) -> tuple[str, ...]:
    """``--sinks a,b c`` -> (a, b, c)."""
    out: list[str] = []
    for v in values or ():
        out += [s for s in v.split(",") if s]
    return tuple(out)


def policies_of(paths: Iterable[str]) -> tuple[Policy, ...]:
    """Past policies from files (their sinks are audited too)."""
    return tuple(load_policy(p) for p in paths)
