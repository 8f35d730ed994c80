"""``consentgate replay``: re-run enforcement over a retained range of a source topic.

Every record of the range is judged again by the router's own core
(:class:`~consentgate.router.plan.Router`: parse, misrouted check, plan) against the consent
of ``--consent`` (:mod:`consentgate.ops.replay_consent`), and written:

- **versioned** (default): every output goes to ``T.<suffix>`` beside its live topic ``T``
  (sinks, decisions, provisions, dead letters; created like the live ones,
  :mod:`consentgate.ops.replay_topics`). The live topics are not touched.
- **live** (``--live``): into the live sinks, idempotently. The live sinks are read first
  (:mod:`consentgate.ops.replay_live`): an (event, sink) pair the sink holds is not written
  again; a pair it holds that the rule now denies is retracted, under the key the live
  record has. Retractions come first: a *deciding pass* over the range finds them, one
  transaction writes them, and the *writing pass* then re-delivers every allowed event
  (a retraction deletes everything under its key, so allowed records held under a retracted
  key count as not held any more and are written again, after the retraction). Provisions go
  to the live ledger (today's ledger is read back: no provision twice); decision records
  are written for the events whose delivery changed; dead letters are not written again.
- **dry run** (``--dry-run``): the deciding pass alone; nothing is written; the report says
  per sink what would be added, retracted and left unchanged.

Exactly once, resumable: one transactional producer (``transactional.id
consentgate-replay-<id>``) commits the outputs and the source offsets together
(``send_offsets_to_transaction``, group ``consentgate-replay-<id>``). The first transaction
commits the range's start offsets (and, live, the retractions), each with the run's pin in
the offset metadata: the args' digest, the partition's end offset and the suffix. A replay
started again with the same id (killed, failed) fences its predecessor (``init_transactions``),
reads the pins and goes on from the committed offsets to the pinned ends, into the pinned
topics; its read_committed output holds each record once.

Withdrawals while it runs (``--consent now``): before each commit, with its records
appended, the replay reads consent.changes to its end; a withdrawal or erasure of a subject
whose data this transaction wrote (versioned: this run wrote) is retracted in the same
transaction, after the data, with the router's own retraction records. A withdrawal appended
later is behind the data, so the router's retraction of it is too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from consentgate.errors import ConfigError, ConsentgateError
from consentgate.ops.replay_consent import ConsentSource, CurrentConsent, HistoryConsent
from consentgate.ops.replay_decide import Decider
from consentgate.ops.replay_live import HeldIndex, ledger_subjects, provision_ids, read_held
from consentgate.ops.replay_outputs import PlanSplitter, replay_retraction
from consentgate.ops.replay_progress import Progress
from consentgate.ops.replay_range import PartitionRange, Position, resolve_ranges
from consentgate.ops.replay_read import RangeReader
from consentgate.ops.replay_report import ReplayReport
from consentgate.ops.replay_topics import TopicShape, create_like, shape_of, versioned
from consentgate.ops.replay_writer import Writer
from consentgate.policy import (
    Decision,
    Policy,
    PseudonymKeys,
    Sink,
    load_policy,
    pseudonym_key_names,
)
from consentgate.router.config import RouterConfig
from consentgate.router.judge import Judge
from consentgate.router.outputs import OutputTopics
from consentgate.router.plan import Router
from consentgate.router.txn import Outbox
from consentgate.serde import Serde, SerdeSettings
from consentgate.settings import Settings

__all__ = [
    "ConsentMode",
    "Replay",
    "ReplayFailed",
    "ReplayRequest",
    "RunPin",
    "as_json",
]

log = logging.getLogger(__name__)

ConsentMode = Literal["now", "event-time"]
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class ReplayFailed(ConsentgateError):
    """Kafka refused or failed; nothing past the last commit is committed (exit 70)."""


@dataclass(frozen=True)
class ReplayRequest:
    source: str
    start: Position
    end: Position | None = None
    sinks: tuple[str, ...] | None = None
    consent: ConsentMode = "now"
    into: str | None = None
    live: bool = False
    dry_run: bool = False
    replay_id: str | None = None
    rate: float | None = None  # records/s at most
    commit_interval: float = 0.5

    def digest(self, policy_version: str) -> str:
        """A stable hash of what the replay means (not how fast it goes)."""
        meaning = {
            "source": self.source,
            "from": self.start.text,
            "to": self.end.text if self.end is not None else None,
            "sinks": sorted(self.sinks) if self.sinks is not None else None,
            "consent": self.consent,
            "into": self.into,
            "live": self.live,
            "policy": policy_version,
        }
        text = json.dumps(meaning, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def id_for(self, policy_version: str) -> str:
        if self.replay_id is not None:
            if not _ID.match(self.replay_id):
                raise ConfigError(
                    f"--id {self.replay_id!r}: letters, digits, '.', '_' and '-' (at most 200)"
                )
            return self.replay_id
        slug = re.sub(r"[^A-Za-z0-9._-]", "-", self.source)[:60]
        return f"{slug}-{self.digest(policy_version)[:12]}"


@dataclass(frozen=True, slots=True)
class RunPin:
    """What a replay id was started with, kept in its committed offsets' metadata."""

    digest: str
    end: int
    suffix: str | None

    def encode(self) -> str:
        return json.dumps({"v": 1, "d": self.digest, "e": self.end, "s": self.suffix})

    @classmethod
    def decode(cls, text: str | None) -> RunPin | None:
        try:
            data = json.loads(text or "")
            return cls(str(data["d"]), int(data["e"]), data["s"])
        except (ValueError, KeyError, TypeError):
            return None


class _Outbox(Outbox):
    def flush(self, timeout: float = 30.0) -> None:
        """Every produced record acknowledged (appended) before going on."""
        if self._producer.flush(timeout) > 0:
            raise ReplayFailed(f"records not acknowledged in {timeout:.0f} s")


@dataclass
class _Run:
    """One run's mutable state."""

    ranges: dict[int, PartitionRange]
    pins: dict[int, RunPin]
    resumed: bool = False
    suffix: str | None = None
    topics: dict[str, str] = field(default_factory=dict)  # live -> output topic
    index: dict[str, HeldIndex] = field(default_factory=dict)
    retracted: set[tuple[str, str]] = field(default_factory=set)  # (sink, identity) pass 1


class Replay:
    """Built from the request and the router's settings; ``run()`` returns the report."""

    def __init__(
        self,
        request: ReplayRequest,
        config: RouterConfig,
        settings: Settings | None = None,
        *,
        stream: TextIO | None = None,
    ) -> None:
        self.request = request
        self.config = config
        self.stream = stream if stream is not None else sys.stderr
        settings = settings or Settings()
        if not settings.bootstrap:
            raise ConfigError("no cluster: set CONSENTGATE_BOOTSTRAP (host:port[,host:port])")
        if request.live and request.into is not None:
            raise ConfigError("--into and --live exclude each other")
        if request.live and request.consent == "event-time":
            raise ConfigError(
                "--live needs --consent now: consent as known at the event's time may since "
                "have been withdrawn, and the live sinks may only get what is allowed now"
            )
        if request.into is not None:
            versioned("topic", request.into)  # ConfigError now, not after loading consent
        if request.commit_interval <= 0 or (request.rate is not None and request.rate <= 0):
            raise ConfigError("--commit-interval and --rate must be positive")
        self.policy: Policy = load_policy(config.policy)
        source = self.policy.source_for_topic(request.source)
        if source is None:
            known = ", ".join(s.topic for s in self.policy.sources)
            raise ConfigError(f"--source {request.source}: no source of the policy ({known})")
        self.source = source
        fed = self.policy.sinks_for(source.name)
        if request.sinks is not None:
            names = {s.name for s in fed}
            wrong = [n for n in request.sinks if n not in names]
            if wrong:
                raise ConfigError(
                    f"--sinks: {', '.join(wrong)} not fed by {source.name} "
                    f"(its sinks: {', '.join(sorted(names))})"
                )
            self.sinks: tuple[Sink, ...] = tuple(s for s in fed if s.name in request.sinks)
        else:
            self.sinks = fed
        self.selected = {s.name for s in self.sinks}
        self.keys = PseudonymKeys.from_settings()
        self.keys.check(pseudonym_key_names(fed))  # the core keys every sink of the source
        self.kafka = settings.kafka_config(None, logger=logging.getLogger("librdkafka"))
        self.settings = settings
        self.serde = Serde.from_settings(SerdeSettings())
        t = config.topics
        self.live_topics = OutputTopics(
            decisions=t.decisions, provisions=t.provisions, dead_letters=t.dead_letters
        )
        self.id = request.id_for(self.policy.version)
        self.digest = request.digest(self.policy.version)
        self.group = f"consentgate-replay-{self.id}"
        self.mode = "dry-run" if request.dry_run else ("live" if request.live else "versioned")
        self.report = ReplayReport(self.id, self.mode, request.consent, request.source)
        self._outbox: _Outbox | None = None
        self._consent: ConsentSource | None = None
        self._ledger: list[str] = []
        self._pending: dict[str, dict[bytes, Decision]] = {}
        for sink in self.sinks:
            self.report.tally(sink.name, sink.topic)

    # -- the run --------------------------------------------------------------------------
    def run(self) -> ReplayReport:
        started = time.monotonic()
        self._say(
            f"replay id {self.id} ({self.mode}, consent {self.request.consent}) of "
            f"{self.request.source} -> {', '.join(sorted(self.selected))}"
        )
        consumer = Consumer(
            {
                **self.kafka,
                "group.id": self.group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            run = self._prepare(consumer)
            self.report.resumed = run.resumed
            self.report.suffix = run.suffix
            left = sum(r.size for r in run.ranges.values())
            if run.resumed and left == 0:
                self.report.complete_before = True
                self._say("already complete: every partition is at its pinned end")
                return self._done(started)
            self._say(self._describe(run))
            self._consent = self._load_consent()
            if self.mode != "versioned":
                self._read_live(run)
            if self.mode == "dry-run":
                began = time.monotonic()
                self._decide_pass(consumer, run, self.report)
                self.report.pass_seconds = time.monotonic() - began
                return self._done(started)
            self._open(run)
            if not run.resumed:
                self._first_transaction(consumer, run)
            began = time.monotonic()
            self._write_pass(consumer, run)
            self.report.pass_seconds = time.monotonic() - began
            return self._done(started)
        except KafkaException as exc:
            raise ReplayFailed(f"Kafka: {exc.args[0]}") from exc
        finally:
            consumer.close()
            if self._consent is not None:
                self._consent.close()

    def _done(self, started: float) -> ReplayReport:
        self.report.seconds = time.monotonic() - started
        return self.report

    def _say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    # -- setting up -----------------------------------------------------------------------
    def _prepare(self, consumer: Consumer) -> _Run:
        topic = self.request.source
        ranges = resolve_ranges(consumer, topic, self.request.start, self.request.end)
        suffix = None
        if self.mode == "versioned":
            suffix = self.request.into or "replay-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        pins = {p: RunPin(self.digest, r.end, suffix) for p, r in ranges.items()}
        run = _Run(ranges, pins, suffix=suffix)
        if self.mode == "dry-run":
            return run
        committed = consumer.committed([TopicPartition(topic, p) for p in ranges], timeout=30)
        held = {tp.partition: tp for tp in committed if tp.offset >= 0}
        if not held:
            return run
        for p, tp in held.items():
            pin = RunPin.decode(tp.metadata)
            if pin is None or pin.digest != self.digest:
                raise ConfigError(
                    f"replay id {self.id} was started with other arguments (or is not a "
                    "replay's group): give this replay another --id"
                )
            pins[p] = pin
            ranges[p] = PartitionRange(p, min(tp.offset, pin.end), pin.end)
        run.resumed = True
        if self.mode == "versioned":
            run.suffix = pins[min(held)].suffix
            run.pins = {p: replace(pin, suffix=run.suffix) for p, pin in pins.items()}
        return run

    def _describe(self, run: _Run) -> str:
        parts = ", ".join(f"[{p}] {r.start}..{r.end}" for p, r in sorted(run.ranges.items()))
        where = f" into *.{run.suffix}" if run.suffix else ""
        head = "resuming" if run.resumed else "range"
        return f"{head} {parts}{where}"

    def _load_consent(self) -> ConsentSource:
        t = self.config.topics
        self._say(f"loading consent ({self.request.consent})")
        core = self._core()
        if self.request.consent == "event-time":
            source: ConsentSource = HistoryConsent(
                self.kafka, changes_topic=t.consent_changes, core=core
            )
        else:
            source = CurrentConsent(
                self.kafka,
                state_topic=t.consent_state,
                changes_topic=t.consent_changes,
                router_group=self.config.app_id,
                core=core,
                timeout=self.config.loop.view_load_timeout,
            )
        return source

    def _core(self) -> Router:
        return Router(
            self.policy,
            self.serde,
            self.keys,
            self.live_topics,
            timeline_memory=self.config.loop.timeline_memory,
        )

    def _read_live(self, run: _Run) -> None:
        for sink in self.sinks:
            self._say(f"reading what {sink.topic} holds")
            run.index[sink.name] = read_held(self.kafka, sink.topic, self.serde)
        partners = {s.name: run.index[s.name] for s in self.sinks if s.recipient is not None}
        if any(len(i) for i in partners.values()):
            ledger = self.live_topics.provisions
            n = ledger_subjects(self.kafka, ledger, self.serde, partners)
            self._say(f"{ledger}: {n} provisions name the subjects of partner sink keys")

    def _open(self, run: _Run) -> None:
        """Topics (versioned), the provision memory, and the transactional producer."""
        t = self.live_topics
        if self.mode == "versioned":
            suffix = run.suffix or ""
            live = [s.topic for s in self.sinks] + [t.decisions, t.provisions, t.dead_letters]
            run.topics = {name: versioned(name, suffix) for name in live}
            admin = AdminClient(self.kafka)
            shape = shape_of(admin, self.request.source)
            fallback = TopicShape(len(run.ranges), shape.replication_factor if shape else -1, {})
            self.report.topics_created = create_like(admin, run.topics, fallback)
            for name in self.report.topics_created:
                self._say(f"created {name}")
            since = None  # the replay's own ledger, whole
        else:
            run.topics = {}
            since = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), UTC)
        ledger = run.topics.get(t.provisions, t.provisions)
        if ledger not in self.report.topics_created:  # a new one holds nothing
            self._ledger = provision_ids(self.kafka, ledger, since)
        outbox = _Outbox(
            self.settings.producer_config(
                None,
                **{
                    "logger": self.kafka["logger"],
                    "transactional.id": self.group,
                    "transaction.timeout.ms": self.config.loop.transaction_timeout_ms,
                    "linger.ms": 5,
                    "queue.buffering.max.messages": 1_000_000,
                    "queue.buffering.max.kbytes": 524_288,
                },
            )
        )
        outbox.init()  # fences a predecessor with this id, aborting what it left open
        t_live = [t.decisions, t.provisions] + [s.topic for s in self.sinks]
        outbox.warm(sorted({run.topics.get(name, name) for name in t_live}))
        self._outbox = outbox

    # -- the passes -----------------------------------------------------------------------
    def _reader(self, consumer: Consumer, run: _Run) -> RangeReader:
        return RangeReader(
            consumer,
            self.request.source,
            run.ranges,
            rate=self.request.rate,
            commit_interval=self.request.commit_interval,
        )

    def _progress(self, run: _Run, label: str) -> Progress:
        return Progress(sum(r.size for r in run.ranges.values()), self.stream, label=label)

    def _decide_pass(self, consumer: Consumer, run: _Run, report: ReplayReport) -> None:
        """Judge every record against what the live sinks hold; note what to retract."""
        decider = Decider(
            Judge(self._core(), len(run.ranges)),
            self._consent_source(),
            self.sinks,
            run.index,
            report,
        )
        self._reader(consumer, run).read(
            decider.handle, self._progress(run, "replay: deciding"), None
        )
        self._pending = decider.finish()
        run.retracted = decider.retracted

    def _first_transaction(self, consumer: Consumer, run: _Run) -> None:
        """Pin the run: its start offsets (with the pins), and, live, the retractions."""
        outbox = self._require_outbox()
        if self.mode == "live":
            pre = ReplayReport(self.id, self.mode, self.request.consent, self.request.source)
            self._decide_pass(consumer, run, pre)
            outbox.begin()
            for sink in self.sinks:
                index = run.index[sink.name]
                tally = self.report.tally(sink.name, sink.topic)
                tally.retracted = pre.tally(sink.name, sink.topic).retracted
                for key, decision in sorted(self._pending[sink.name].items()):
                    out = replay_retraction(
                        sink.topic,
                        key,
                        sink=sink,
                        decision=decision,
                        policy_version=self.policy.version,
                        replay_id=self.id,
                    )
                    outbox.produce(out.topic, out.key, None, list(out.headers))
                    index.retracted(key)
                    tally.retraction_keys += 1
        self._commit(consumer, run, {p: r.start for p, r in run.ranges.items()})

    def _write_pass(self, consumer: Consumer, run: _Run) -> None:
        core = self._core()
        core.remember_provisions(self._ledger)
        outbox = self._require_outbox()
        writer = Writer(
            replay_id=self.id,
            judge=Judge(core, len(run.ranges)),
            consent=self._consent_source(),
            sinks=self.sinks,
            outbox=outbox,
            flush=outbox.flush,
            splitter=PlanSplitter(self.policy, self.live_topics, self.serde),
            topics=run.topics,
            index=run.index if self.mode == "live" else None,
            retracted=run.retracted,
            report=self.report,
        )

        def commit(positions: dict[int, int]) -> None:
            writer.guard()
            self._commit(consumer, run, positions)
            writer.committed()

        label = "replay: writing" if self.mode == "live" else "replay"
        self._reader(consumer, run).read(writer.handle, self._progress(run, label), commit)

    # -- transactions ---------------------------------------------------------------------
    def _commit(self, consumer: Consumer, run: _Run, positions: dict[int, int]) -> None:
        outbox = self._require_outbox()
        topic = self.request.source
        offsets = [
            TopicPartition(topic, p, positions[p], metadata=run.pins[p].encode())
            for p in sorted(run.ranges)
        ]
        outbox.begin()
        try:
            outbox.commit(offsets, consumer.consumer_group_metadata())
        except ConsentgateError as exc:  # Aborted or Fatal: restart to resume
            raise ReplayFailed(f"transaction not committed: {exc}") from exc

    def _require_outbox(self) -> _Outbox:
        if self._outbox is None:
            raise ReplayFailed("no producer (dry run)")
        return self._outbox

    def _consent_source(self) -> ConsentSource:
        if self._consent is None:
            raise ReplayFailed("consent not loaded")
        return self._consent


def as_json(report: ReplayReport) -> str:
    data: dict[str, Any] = report.to_json()
    return json.dumps(data, indent=2, sort_keys=True)
