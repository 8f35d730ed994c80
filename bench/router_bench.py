"""Router benchmark on a real broker: throughput, two baselines, latencies, consent-view startup.

    .venv/bin/python bench/router_bench.py [--events 50000] [--bootstrap HOST:PORT] [--big]

Cluster: ``--bootstrap``, else ``CONSENTGATE_BOOTSTRAP``, else ``open_cluster()`` (which may
start the local broker). Every run works on fresh topics suffixed ``.bench-<time>-<hex>``
(``--partitions``, default 6) and deletes them, its consumer groups and faust's own topics
afterwards. Measured, in this order:

1. setup: a consent fold (``consentgate consent fold`` subprocess) on the case's topics;
   consent for S subjects through the consent service's write path (the demo case's
   generator, pipelined appends to consent.changes: 1 analytics + 1-4 of 38 partner grants
   each); wait until the fold has committed every change (consent.state holds them); then N
   browsing events timed after the grants;
2. baseline A: one Python process, confluent-kafka ``consume(500)`` → ``produce`` each value
   to a scratch topic → ``commit``: the practical limit for a Python process here;
3. baseline B: a faust-streaming pass-through agent (tests/integration/apps/passthrough_app.py)
   as a subprocess over the same topic;
4. the router (``consentgate router`` subprocess): events/s from readiness until the decisions
   topic holds N records (sums of high watermarks), and its ratio to A and B;
5. consent change → enforced, with that router (and the fold) still running: K times, a
   background thread produces one event per 20 ms (event time = produce time) for a granted
   subject; at t0 the service records a WITHDRAW of analytics (t0 = its recorded time = its
   effective time) and appends it to consent.changes; the fold writes consent.state. Latency
   = produce time of the first event at or after t0 from which on every analytics decision is
   a deny, minus t0 (granularity: the 20 ms period); also t0 → the withdrawal in consent.state
   (the fold's record, as a read_committed consumer sees it);
6. event → sink: events at a steady rate (default 200/s); per event, the analytics sink
   record's Kafka timestamp (CreateTime, set by the router's producer at send) minus the raw
   record's (set by our producer);
7. startup: for each size, consent timelines for that many subjects produced straight to
   consent.state (one record per subject, i.e. the compacted topic; built with
   ``timeline.apply`` from grants recorded now; no fold, no consent.changes), then a fresh
   router: process start → ``/readyz`` 200, and its RSS (VmRSS) at that moment. ``--big``
   adds 1M.

Throughput figures also give CPU seconds used by the process under test and how busy the
whole machine was (the broker shares its cores), since the machine is shared. A router that
stops making progress for 60 s is diagnosed (its counters, its group's committed offsets, a
stack dump of its tasks via SIGUSR1 into its log) and the run goes on with the next phases.
Prints a table and writes bench/results/router.md; the processes' logs stay in a temp dir.

Other options: ``--only PHASE...`` (baselines router withdraw latency startup), ``--subjects``,
``--withdrawals``, ``--window``, ``--latency-events``, ``--latency-rate``,
``--startup-subjects``, ``--profile`` (router under cProfile), ``--keep`` (leave the topics),
``--note`` (a remark for the results file).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import io
import math
import os
import platform
import pstats
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # implicit re-export
    AdminClient,
    NewTopic,
)

from consentgate.consent.changelog import ChangeLog
from consentgate.consent.requests import ChangeRequest
from consentgate.consent.service import ConsentService
from consentgate.consent.timeline import Timeline, apply
from consentgate.models.consent import (
    ConsentAction,
    ConsentChange,
    ConsentMethod,
    ConsentTimeline,
)
from consentgate.policy import load_policy
from consentgate.serde import Serde
from consentgate.settings import Settings
from consentgate_dev.cluster import open_cluster
from consentgate_dev.demo.case import CaseSpec, produce_events, write_consent
from consentgate_dev.demo.policygen import PolicyPlan, partner_ids, policy_yaml
from consentgate_dev.jvm import free_port
from consentgate_dev.services import ServiceProcess

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import (
    busy_share,
    cpu_model,
    loadavg,
    machine_busy,
    mem_total_gib,
    proc_cpu_seconds,
    proc_status_mib,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "router.md"
PASSTHROUGH_APPS = REPO / "tests" / "integration" / "apps"
MASTER_KEY = "bench-only-master-key-0123456789abcdef"
KAFKA = "Apache Kafka 4.1.1, local single KRaft node on the same machine"
PARTNERS = 38
ANALYTICS_SINK = "analytics"
HANDLE_SUM = "consentgate_decision_seconds_sum"
HANDLE_COUNT = "consentgate_decision_seconds_count"
ROUTER_WAITING = "consentgate_gate_waiting_events"
PIPE_RUNS = 3  # the pipe is fast and short: take the median of a few runs
STALL_S = 180.0  # give up when a pipeline makes no progress for this long
ROUTER_STALL_S = 60.0  # a router that stops short gets diagnosed, and the run goes on

_children: list[subprocess.Popen[bytes]] = []


def say(text: str) -> None:
    print(text, flush=True)


# -- machine ------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def ms_summary(values_s: list[float]) -> str:
    if not values_s:
        return "no samples"
    finite = [v for v in values_s if math.isfinite(v)]
    never = len(values_s) - len(finite)

    def fmt(v: float) -> str:
        return "∞" if not math.isfinite(v) else f"{v * 1000:.1f} ms"

    text = (
        f"p50 {fmt(pct(values_s, 0.5))}, p99 {fmt(pct(values_s, 0.99))}, "
        f"max {fmt(max(values_s))} (n={len(values_s)}"
    )
    return text + (f", {never} never)" if never else ")")


# -- topics, counting, background readers -------------------------------------------------


@dataclass
class TopicSet:
    """One policy plan's topics (suffixed), as the router's CLI names them."""

    plan: PolicyPlan
    partitions: int


class Kafka:
    """Admin, topic bookkeeping and watermark counting for one benchmark run."""

    def __init__(self, bootstrap: str, tag: str) -> None:
        self.settings = Settings()
        self.bootstrap = bootstrap
        self.tag = tag
        self.conf = self.settings.kafka_config(bootstrap)
        self.admin = AdminClient(self.conf)
        self.created: list[str] = []
        self._counter = Consumer({**self.conf, "group.id": f"{tag}-watermarks"})

    def create(self, topics: list[str], partitions: int, compact: tuple[str, ...] = ()) -> None:
        new = [
            NewTopic(
                t,
                num_partitions=partitions,
                replication_factor=1,
                config={"cleanup.policy": "compact"} if t in compact else {},
            )
            for t in topics
        ]
        for future in self.admin.create_topics(new, operation_timeout=60).values():
            future.result(timeout=60)
        self.created += topics
        self._await_metadata(topics, partitions)

    def _await_metadata(self, topics: list[str], partitions: int, timeout: float = 60.0) -> None:
        """Metadata lags the admin's acks under load (router-internals trap 9)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            meta = self.admin.list_topics(timeout=10).topics
            if all(t in meta and len(meta[t].partitions) == partitions for t in topics):
                return
            time.sleep(0.2)
        raise RuntimeError(f"topics not in metadata after {timeout} s")

    def count(self, topic: str, partitions: int) -> int:
        """Records in ``topic`` now: the sum of its high watermarks (retried for a while:
        fresh topics answer NOT_LEADER_FOR_PARTITION at first)."""
        deadline = time.monotonic() + 30.0
        while True:
            try:
                return sum(
                    self._counter.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    or 0
                    for p in range(partitions)
                )
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def group_offsets(self, group: str, topic: str, partitions: int) -> list[tuple[int, int, int]]:
        """(partition, committed offset or -1, end offset) of ``group`` on ``topic``."""
        reader = Consumer({**self.conf, "group.id": group, "enable.auto.commit": False})
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            committed = reader.committed(tps, timeout=10)
            return [
                (tp.partition, tp.offset, self._counter.get_watermark_offsets(tp, timeout=10)[1])
                for tp in committed
            ]
        finally:
            reader.close()

    def cleanup(self) -> None:
        """Delete every topic and consumer group of this run (best effort)."""
        with contextlib.suppress(Exception):
            self._counter.close()
        with contextlib.suppress(Exception):
            existing = self.admin.list_topics(timeout=10).topics
            doomed = sorted({*self.created, *(t for t in existing if self.tag in t)})
            doomed = [t for t in doomed if t in existing]
            if doomed:
                for future in self.admin.delete_topics(doomed, operation_timeout=60).values():
                    with contextlib.suppress(Exception):
                        future.result(timeout=60)
            say(f"      deleted {len(doomed)} topics")
        self._delete_groups()

    def _delete_groups(self, patience: float = 60.0) -> None:
        """The router's static members never leave their group (router-internals trap 4):
        its group is deletable only once their session timed out (30 s), hence the retries."""
        deadline = time.monotonic() + patience
        deleted: set[str] = set()
        left: list[str] = []
        while True:
            with contextlib.suppress(Exception):
                listed = self.admin.list_consumer_groups().result(timeout=30)
                left = [g.group_id for g in listed.valid if self.tag in g.group_id]
            for group, future in (self.admin.delete_consumer_groups(left) if left else {}).items():
                with contextlib.suppress(Exception):
                    future.result(timeout=30)
                    deleted.add(group)
            left = [g for g in left if g not in deleted]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(5.0)
        say(f"      deleted {len(deleted)} consumer groups" + (f"; left: {left}" if left else ""))


class Collector(threading.Thread):
    """Reads a topic from its current end in the background: ``found[id] = value``."""

    def __init__(
        self,
        kafka: Kafka,
        topic: str,
        partitions: int,
        extract: Callable[[Serde, Message], tuple[str, Any] | None],
    ) -> None:
        super().__init__(daemon=True, name=f"collect-{topic}")
        self.extract = extract
        self.serde = Serde.from_settings(kafka.settings)
        self.found: dict[str, Any] = {}
        self.errors = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._consumer = Consumer(
            {**kafka.conf, "group.id": f"{kafka.tag}-collect", "enable.auto.commit": False}
        )
        ends = [
            self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        ]
        self._consumer.assign([TopicPartition(topic, p, end) for p, end in enumerate(ends)])

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for msg in self._consumer.consume(500, 0.1):
                    if msg.error() is not None or msg.value() is None:
                        continue
                    try:
                        item = self.extract(self.serde, msg)
                    except Exception:  # noqa: BLE001 - count and go on, a bench must finish
                        self.errors += 1
                        continue
                    if item is not None:
                        with self._lock:
                            self.found[item[0]] = item[1]
        finally:
            self._consumer.close()

    def get(self, key: str) -> Any:
        with self._lock:
            return self.found.get(key)

    def wait_for(self, keys: list[str], timeout: float) -> int:
        """Wait until every key was seen; returns how many are still missing."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                missing = sum(1 for k in keys if k not in self.found)
            if missing == 0 or time.monotonic() > deadline:
                return missing
            time.sleep(0.1)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def decision_of(serde: Serde, msg: Message) -> tuple[str, Any] | None:
    """event id -> (analytics allowed, analytics reason, decision record timestamp ms)."""
    value = serde.decode(msg.value()).value
    outcome = next((o for o in value["outcomes"] if o["sink"] == ANALYTICS_SINK), None)
    if outcome is None:
        return None
    return str(value["event_id"]), (outcome["allowed"], outcome["reason"], msg.timestamp()[1])


def sink_record_of(serde: Serde, msg: Message) -> tuple[str, Any] | None:
    """event id -> the sink record's Kafka timestamp (ms)."""
    value = serde.decode(msg.value()).value
    return str(value["evidence"]["event_id"]), msg.timestamp()[1]


# -- processes ----------------------------------------------------------------------------


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if proc in _children:
        _children.remove(proc)


@atexit.register
def _stop_children() -> None:
    for proc in list(_children):
        with contextlib.suppress(Exception):
            stop(proc, timeout=15)


class RouterProc(ServiceProcess):
    """``consentgate router`` on a topic set, logging to ``workdir/<app_id>.log``."""

    name = "router"

    def __init__(
        self,
        kafka: Kafka,
        topics: TopicSet,
        policy: Path,
        workdir: Path,
        *,
        profile: Path | None = None,
    ) -> None:
        port = free_port()
        self.app_id = f"{kafka.tag}-router-{port}"
        self.profile = profile
        args = [
            "router",
            *("--policy", str(policy), "--app-id", self.app_id, "--instance-id", self.app_id),
            *("--web-port", str(port)),
            *topics.plan.router_topic_args(),
        ]
        env = {
            "CONSENTGATE_BOOTSTRAP": kafka.bootstrap,
            "CONSENTGATE_PSEUDONYM_MASTER_KEY": MASTER_KEY,
            "CONSENTGATE_STATE_DIR": str(workdir / f"state-{port}"),
        }
        profiler = ("-m", "cProfile", "-o", str(profile)) if profile else ()
        super().__init__(
            args, env, workdir / f"{self.app_id}.log", port, append=False, python_args=profiler
        )

    def wait_ready(  # type: ignore[override]
        self, timeout: float, every: float = 0.1
    ) -> tuple[float, dict[str, Any]]:
        """(monotonic time when /readyz first answered 200, its body)."""
        body = super().wait_ready(timeout, every)
        return time.monotonic(), body

    def dump_stacks(self) -> None:
        """Ask the faust worker to log every thread's and task's stack (mode: SIGUSR1)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(2.0)

    def log_problems(self) -> int:
        text = self.log.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if "ERROR" in line or "Traceback" in line)


class FoldProc(ServiceProcess):
    """``consentgate consent fold`` on a plan's consent topics (group ``<tag>-fold``),
    logging to ``workdir/<group>.log``."""

    name = "consent fold"

    def __init__(self, kafka: Kafka, plan: PolicyPlan, policy: Path, workdir: Path) -> None:
        self.kafka = kafka
        port = free_port()
        self.group = f"{kafka.tag}-fold"
        self.changes_topic = plan.changes_topic
        args = [
            *("consent", "fold", "--policy", str(policy)),
            *("--changes-topic", plan.changes_topic, "--state-topic", plan.state_topic),
            *("--dlq-topic", plan.dlq_topic, "--group", self.group),
            *("--web-port", str(port)),
        ]
        env = {"CONSENTGATE_BOOTSTRAP": kafka.bootstrap}
        super().__init__(args, env, workdir / f"{self.group}.log", port, append=False)

    def wait_ready(  # type: ignore[override]
        self, timeout: float = 120.0, every: float = 0.1
    ) -> float:
        """Until ``/readyz`` answers 200 (the fold holds its partitions); the seconds taken."""
        super().wait_ready(timeout, every)
        return time.monotonic() - self.started

    def wait_folded(self, partitions: int, timeout: float = 900.0) -> float:
        """Until the fold's group has committed past every change consent.changes holds now
        (consent.state then holds them: the fold acknowledges a batch after its state commit);
        the seconds waited."""
        probe = Consumer({**self.kafka.conf, "group.id": self.group, "enable.auto.commit": False})
        tps = [TopicPartition(self.changes_topic, p) for p in range(partitions)]
        started = last_say = time.monotonic()
        try:
            ends = {tp.partition: probe.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
            total = sum(ends.values())
            while True:
                done = {tp.partition: tp.offset for tp in probe.committed(tps, timeout=10)}
                if all(done[p] >= end for p, end in ends.items() if end > 0):
                    return time.monotonic() - started
                now = time.monotonic()
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"consent fold exited {self.proc.returncode}; see {self.log}"
                    )
                if now - started > timeout:
                    raise RuntimeError(f"consent fold at {done} of {ends} after {timeout:.0f} s")
                if now - last_say > 5.0:
                    folded = sum(max(0, min(done[p], end)) for p, end in ends.items())
                    say(f"      consent fold: {folded:,}/{total:,} changes committed")
                    last_say = now
                time.sleep(0.1)
        finally:
            probe.close()

    def counters(self) -> str:
        m = self.metrics()
        return (
            f"{m.get('consentgate_fold_changes_total', float('nan')):,.0f} changes applied, "
            f"{m.get('consentgate_fold_duplicates_total', float('nan')):,.0f} duplicates, "
            f"{m.get('consentgate_fold_rejected_total', float('nan')):,.0f} dead letters"
        )

    def log_problems(self) -> int:
        text = self.log.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if "ERROR" in line or "Traceback" in line)


# -- results ------------------------------------------------------------------------------


@dataclass
class Throughput:
    events: int
    seconds: float
    cpu_seconds: float
    machine_busy: float
    detail: str = ""
    stalled: bool = False  # counted up to the last progress before a stall

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def describe(self) -> str:
        return (
            f"{self.rate:,.0f} events/s ({self.events:,} in {self.seconds:.1f} s; process used "
            f"{self.cpu_seconds / self.seconds:.0%} of a core, "
            f"{self.events / max(self.cpu_seconds, 1e-9):,.0f} events per CPU-second; all "
            f"cores {self.machine_busy:.0%} busy)" + (" UNTIL IT STALLED" if self.stalled else "")
        )


@dataclass
class Report:
    load_at_start: str = ""
    code: str = ""
    startups: dict[int, tuple[float, float]] = field(default_factory=dict)  # s, RSS MiB
    rows: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rates: dict[str, Throughput] = field(default_factory=dict)

    def add(self, what: str, result: str) -> None:
        self.rows.append((what, result))
        say(f"  => {what}: {result}")


class Stalled(RuntimeError):
    """A pipeline made no progress for too long: how far it got, and when it last moved."""

    def __init__(self, message: str, done: int, last_change: float) -> None:
        super().__init__(message)
        self.done = done
        self.last_change = last_change


def wait_count(
    kafka: Kafka,
    topic: str,
    partitions: int,
    target: int,
    alive: Callable[[], bool],
    *,
    start_when: Callable[[int], bool],
    label: str,
    stall: float = STALL_S,
) -> tuple[float, int, float]:
    """Poll ``topic``'s size; returns (t_start, count at t_start, t_done).

    ``t_start`` is the first poll at which ``start_when(count)`` holds; ``t_done`` the first
    at which count ≥ ``target``. Raises RuntimeError when ``alive()`` turns false, Stalled
    when nothing moved for ``stall`` seconds.
    """
    t_start: float | None = None
    c_start = 0
    last, last_change, last_print = -1, time.monotonic(), time.monotonic()
    while True:
        now = time.monotonic()
        done = kafka.count(topic, partitions)
        if t_start is None and start_when(done):
            t_start, c_start = now, done
        if done >= target:
            return (t_start if t_start is not None else now), c_start, now
        if done != last:
            last, last_change = done, now
        if not alive():
            raise RuntimeError(f"{label}: process exited at {done:,}/{target:,}")
        if now - last_change > stall:
            message = f"{label}: no progress for {stall:.0f} s at {done:,}/{target:,}"
            raise Stalled(message, done, last_change)
        if now - last_print > 5.0 and t_start is not None:
            rate = (done - c_start) / max(now - t_start, 1e-9)
            say(f"      {label}: {done:,}/{target:,} ({rate:,.0f}/s)")
            last_print = now
        time.sleep(0.2)


# -- the case: topics, consent and events shared by the throughput and latency phases ------


@dataclass
class Case:
    kafka: Kafka
    topics: TopicSet
    policy: Path
    workdir: Path
    service: ConsentService  # the consent service's write path (appends to consent.changes)
    serde: Serde
    subjects: list[str] = field(default_factory=list)
    events: int = 0
    fold: FoldProc | None = None  # the consent fold: consent.changes -> consent.state

    @property
    def raw(self) -> str:
        return self.topics.plan.browsing_topic

    def close(self) -> None:
        """Stop the fold and close the write path's producer."""
        if self.fold is not None:
            self.fold.stop()
        self.service.changelog.close()


def browsing_event(serde: Serde, subject: str, when: datetime, company: str) -> tuple[str, bytes]:
    event_id = uuid.uuid4()
    datum = {
        "event_id": event_id,
        "subject_id": subject,
        "event_time": when,
        "event_type": "JOB_VIEW",
        "job_id": "job-1",
        "company_id": company,
        "country": "JP",
        "gpc": False,
    }
    return str(event_id), serde.encode(datum, "BrowsingEvent")


def warm_producer(case: Case) -> Producer:
    """A linger-0 producer that already has metadata and its producer id (trap 8)."""
    producer = Producer(
        case.kafka.settings.producer_config(case.kafka.bootstrap, **{"linger.ms": 0})
    )
    _, warm = browsing_event(case.serde, case.subjects[-1], datetime.now(UTC), "x")
    producer.produce(case.raw, key=case.subjects[-1].encode(), value=warm)
    producer.flush(30)
    return producer


def make_case(kafka: Kafka, workdir: Path, partitions: int, subjects: int, n: int) -> Case:
    """Topics, policy, a consent fold, the case's consent for ``subjects`` through the write
    path (folded into consent.state before anything else), then about ``n`` browsing events
    timed after every grant."""
    plan = PolicyPlan(partner_ids(PARTNERS), partner_ids(PARTNERS)[:3], suffix=f".{kafka.tag}")
    topics = TopicSet(plan, partitions)
    every = [*plan.core_topics(), *plan.sink_topics()]
    say(f"[setup] {len(every)} topics x {partitions} partitions")
    kafka.create(every, partitions, compact=(plan.state_topic,))
    policy = workdir / "policy.yaml"
    policy.write_text(policy_yaml(plan))
    serde = Serde.from_settings(kafka.settings)
    service = ConsentService(load_policy(policy), ChangeLog(kafka.conf, plan.changes_topic, serde))
    case = Case(kafka, topics, policy, workdir, service, serde)
    case.fold = FoldProc(kafka, plan, policy, workdir)
    say(f"[setup] consent fold {case.fold.group} ready in {case.fold.wait_ready():.1f} s")
    say(f"[setup] consent for {subjects:,} subjects, then {n:,} events")
    spec = CaseSpec(
        students=subjects,
        partners=plan.partners,
        never_shared=0,
        events_per_student=max(1, n // subjects),
        score_share=0.0,
        analytics_share=1.0,
        profiling_share=0.0,
    )
    started = time.monotonic()
    rng = random.Random(spec.seed)
    data = write_consent(spec, service, rng, progress=lambda m: say(f"      {m.strip()}"))
    wrote = time.monotonic() - started
    after = service.clock.now()  # strictly after every grant's recorded (= effective) time
    say(
        f"      {data.consent_changes:,} changes appended in {wrote:.1f} s "
        f"({data.consent_changes / max(wrote, 1e-9):,.0f}/s)"
    )
    folded = case.fold.wait_folded(partitions)
    counters = case.fold.counters()
    say(f"      consent fold caught up {folded:.1f} s after the last append ({counters})")
    ahead = after.timestamp() - time.time()
    if ahead > 0:
        # the service's clock is strictly increasing at ms precision: appending faster than
        # 1,000 changes/s runs it ahead of the wall clock; events (and the withdrawals later)
        # must be timed after the grants, so wait for the wall clock to pass it
        say(f"      the service's clock is {ahead:.1f} s ahead of the wall clock: waiting")
        time.sleep(ahead + 0.01)
    produce_events(
        spec,
        data,
        rng,
        kafka.settings.producer_config(kafka.bootstrap),
        after=after,
        browsing_topic=plan.browsing_topic,
        scores_topic=plan.scores_topic,
        serde=serde,
        progress=lambda m: say(f"      {m.strip()}"),
    )
    say(f"      setup took {time.monotonic() - started:.1f} s")
    case.subjects = [f"student-{i:05d}" for i in range(subjects)]
    case.events = data.browsing_events
    return case


# -- throughput: baselines and the router -------------------------------------------------


def baseline_pipe(case: Case, run: int) -> Throughput:
    """confluent-kafka consume(500) → produce each value → commit, in this process.

    The partitions are assigned from offset 0 (no group join to wait for) and the clock runs
    from the assignment until the last produced record is acknowledged.
    """
    kafka, n, p = case.kafka, case.events, case.topics.partitions
    out = f"bench.pipe.out.{kafka.tag}"
    if run == 0:
        kafka.create([out], p)
    consumer = Consumer(
        {**kafka.conf, "group.id": f"{kafka.tag}-pipe-{run}", "enable.auto.commit": False}
    )
    producer = Producer(kafka.settings.producer_config(kafka.bootstrap))
    failed: list[KafkaError] = []

    def on_ack(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(err)

    producer.list_topics(out, timeout=10)  # metadata before the clock starts
    seen = 0
    started, cpu0, busy0 = time.monotonic(), time.process_time(), machine_busy()
    consumer.assign([TopicPartition(case.raw, i, OFFSET_BEGINNING) for i in range(p)])
    try:
        while seen < n:
            batch = consumer.consume(500, 1.0)
            if not batch and time.monotonic() - started > STALL_S:
                raise RuntimeError(f"pipe: stuck at {seen:,}/{n:,} after {STALL_S:.0f} s")
            for msg in batch:
                if msg.error() is not None:
                    continue
                while True:
                    try:
                        producer.produce(out, key=msg.key(), value=msg.value(), on_delivery=on_ack)
                        break
                    except BufferError:
                        producer.poll(0.05)
                seen += 1
            producer.poll(0)
            if batch:
                consumer.commit(asynchronous=True)
        if producer.flush(120) or failed:
            raise RuntimeError(f"pipe: records not acknowledged: {failed[:3]}")
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu0
    finally:
        consumer.close()
    return Throughput(seen, elapsed, cpu, busy_share(busy0, machine_busy()))


def baseline_faust(case: Case) -> Throughput:
    """tests/integration/apps/passthrough_app.py as a faust worker subprocess."""
    kafka, n, p = case.kafka, case.events, case.topics.partitions
    out = f"bench.faust.out.{kafka.tag}"
    kafka.create([out], p)
    env = {
        **os.environ,
        "APP_ID": f"{kafka.tag}-faust",
        "BOOTSTRAP": kafka.bootstrap,
        "IN_TOPIC": case.raw,
        "OUT_TOPIC": out,
        "PARTITIONS": str(p),
        "DATADIR": str(case.workdir / "faust"),
        "PYTHONPATH": os.pathsep.join(
            x for x in (str(PASSTHROUGH_APPS), os.environ.get("PYTHONPATH")) if x
        ),
    }
    cmd = [sys.executable, "-m", "faust", "-A", "passthrough_app", "worker", "-l", "info"]
    proc = spawn([*cmd, "--without-web"], env, case.workdir / "faust-passthrough.log")
    try:
        at_start: list[tuple[float, tuple[int, int]]] = []

        def first_output(count: int) -> bool:
            if count > 0:
                at_start.append((proc_cpu_seconds(proc.pid), machine_busy()))
                return True
            return False

        t_start, c_start, t_done = wait_count(
            kafka, out, p, n, lambda: proc.poll() is None, start_when=first_output, label="faust"
        )
        cpu = proc_cpu_seconds(proc.pid) - at_start[0][0]
        busy = busy_share(at_start[0][1], machine_busy())
        return Throughput(n - c_start, t_done - t_start, cpu, busy)
    finally:
        stop(proc)


def router_throughput(case: Case, router: RouterProc, report: Report) -> Throughput:
    """From /readyz 200 until the decisions topic holds one record per event."""
    kafka, topics = case.kafka, case.topics
    t_ready, body = router.wait_ready(timeout=600)
    loaded = sum(int(v) for v in body.get("consent_positions", {}).values())
    report.add(
        "router start → ready (the setup's consent)",
        f"{t_ready - router.started:.1f} s ({loaded:,} consent.state records)",
    )
    cpu0, busy0 = proc_cpu_seconds(router.proc.pid), machine_busy()
    c_ready = kafka.count(topics.plan.decisions_topic, topics.partitions)
    m0 = router.metrics()
    try:
        _, _, t_done = wait_count(
            kafka,
            topics.plan.decisions_topic,
            topics.partitions,
            case.events,
            lambda: router.proc.poll() is None,
            start_when=lambda _count: True,
            label="router",
            stall=ROUTER_STALL_S,
        )
        done = case.events
    except Stalled as stalled:
        report.add("router STALLED", router_stall(case, router, stalled))
        t_done, done = stalled.last_change, stalled.done
    cpu = proc_cpu_seconds(router.proc.pid) - cpu0
    busy = busy_share(busy0, machine_busy())
    elapsed = t_done - t_ready
    m1 = router.metrics()
    handled = m1.get(HANDLE_COUNT, 0.0) - m0.get(HANDLE_COUNT, 0.0)
    inside = m1.get(HANDLE_SUM, 0.0) - m0.get(HANDLE_SUM, 0.0)
    detail = ""
    if handled:
        detail = (
            f"mean {inside / handled * 1000:.2f} ms per event; {inside / elapsed:.0%} of the "
            "wall time (the rest: fetching, faust's stream plumbing, commits, producer flushes)"
        )
    return Throughput(done - c_ready, elapsed, cpu, busy, detail, stalled=done < case.events)


def router_stall(case: Case, router: RouterProc, stalled: Stalled) -> str:
    """What a stalled router shows: its counters, its group's offsets, its tasks' stacks."""
    m = router.metrics()
    consumed = int(m.get("consentgate_records_consumed_total", -1))
    waiting = int(m.get(ROUTER_WAITING, -1))
    offsets = case.kafka.group_offsets(router.app_id, case.raw, case.topics.partitions)
    behind = ", ".join(f"p{p}: {c} of {e}" for p, c, e in offsets if c != e) or "none"
    router.dump_stacks()
    return (
        f"{stalled}; the router consumed {consumed:,} raw records, {waiting} waiting at the "
        f"gate; committed < end offset on the raw topic: {behind}; task stacks (SIGUSR1) in "
        f"{router.log}. The rows below use the same router."
    )


# -- consent change → enforced ------------------------------------------------------------


@dataclass
class Probe:
    event_id: str
    produced: float  # wall clock at produce = the event's event time


@dataclass
class Withdrawal:
    change_id: str
    t0: float  # the withdrawal's recorded time (= its effective time), set by the service
    acked: float  # service.record() returned: the change is in consent.changes
    probes: list[Probe]


@dataclass(frozen=True)
class ProbeSchedule:
    subject: str
    start: float  # wall clock
    end: float
    period: float = 0.02


def probe_loop(case: Case, producer: Producer, schedule: ProbeSchedule, out: list[Probe]) -> None:
    """Produce one event for the subject every period, stamped with its produce time."""
    i = 0
    key = schedule.subject.encode()
    while (target := schedule.start + i * schedule.period) <= schedule.end:
        delay = target - time.time()
        if delay > 0:
            time.sleep(delay)
        now = time.time()
        when = datetime.fromtimestamp(now, UTC)
        event_id, value = browsing_event(case.serde, schedule.subject, when, "x")
        producer.produce(case.raw, key=key, value=value)
        producer.poll(0)
        out.append(Probe(event_id, now))
        i += 1


class StateWatch(threading.Thread):
    """Reads consent.state from its current end, read_committed (what the router's view
    reads): per change id retained by a record of one of ``subjects``, the first such
    record's CreateTime (ms; the fold's transactional produce) and when it became visible."""

    def __init__(self, kafka: Kafka, topic: str, partitions: int, subjects: list[str]) -> None:
        super().__init__(daemon=True, name=f"state-{topic}")
        self.serde = Serde.from_settings(kafka.settings)
        self.subjects = {s.encode() for s in subjects}
        self.seen: dict[str, tuple[int, float]] = {}
        self.errors = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._c = Consumer(
            {
                **kafka.conf,
                "group.id": f"{kafka.tag}-state-watch",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        ends = [
            self._c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        ]
        self._c.assign([TopicPartition(topic, p, end) for p, end in enumerate(ends)])

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for m in self._c.consume(500, 0.01):
                    if m.error() is not None or m.value() is None or m.key() not in self.subjects:
                        continue
                    seen = time.time()
                    try:
                        record = self.serde.decode_model(m.value(), ConsentTimeline)
                    except Exception:  # noqa: BLE001 - count and go on, a bench must finish
                        self.errors += 1
                        continue
                    with self._lock:
                        for c in record.changes:
                            self.seen.setdefault(c.change_id, (m.timestamp()[1], seen))
        finally:
            self._c.close()

    def get(self, change_id: str) -> tuple[int, float] | None:
        with self._lock:
            return self.seen.get(change_id)

    def wait_for(self, ids: list[str], timeout: float) -> int:
        """Wait until every change id was seen; returns how many are still missing."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                missing = sum(1 for i in ids if i not in self.seen)
            if missing == 0 or time.monotonic() > deadline:
                return missing
            time.sleep(0.1)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


@dataclass
class Enforcement:
    """What one withdrawal's probes show."""

    latency: float  # s from t0 to the first probe from which on all are denied; inf: never
    allowed_after_t0: int = 0  # stamped after t0, before the withdrawal took effect
    allowed_after_ack: int = 0  # of those, stamped after the append was acknowledged
    withdrawn_before_t0: int = 0  # stamped before t0, judged after it: denied "withdrawn"
    held_before_t0: int = 0  # stamped before t0, judged while the withdrawal was unsettled
    anomalies: list[str] = field(default_factory=list)


def enforcement(w: Withdrawal, decisions: Collector) -> Enforcement:
    """Judge one withdrawal's probes (analytics decisions)."""
    result = Enforcement(float("inf"))
    for p in w.probes:
        got = decisions.get(p.event_id)
        if got is None:
            result.anomalies.append("decision missing")
            continue
        allowed, reason, _ = got
        if p.produced < w.t0 and not allowed:
            # the policy also asks "still granted now?": an earlier event judged after the
            # withdrawal is denied as withdrawn; timestamps are whole ms, hence the margin
            if reason == "withdrawn":
                result.withdrawn_before_t0 += 1
            elif reason == "consent_state_stale":
                # the router had read the withdrawal from consent.changes but its view did not
                # show it yet: it holds all of the subject's events (denied stale) meanwhile
                result.held_before_t0 += 1
            elif p.produced < w.t0 - 0.001:
                result.anomalies.append(f"denied before t0 ({reason})")
        elif p.produced >= w.t0 and allowed:
            result.allowed_after_t0 += 1
            if p.produced >= w.acked:
                # in consent.changes, but neither the router's changes reader nor the fold's
                # state record had reached the router when the probe was judged
                result.allowed_after_ack += 1
    after = [p for p in w.probes if p.produced >= w.t0]
    first = len(after)  # index of the first probe from which on every one is denied
    for i in range(len(after) - 1, -1, -1):
        got = decisions.get(after[i].event_id)
        if got is None or got[0]:
            break
        first = i
    if first < len(after):
        result.latency = after[first].produced - w.t0
    return result


def withdraw_request(subject: str) -> ChangeRequest:
    return ChangeRequest(
        subject_id=subject, action=ConsentAction.WITHDRAW, purpose="analytics", method="API"
    )


ACK_ROW = "  t0 (recorded time) → append acknowledged (service.record returned)"
WriteWithdrawal = Callable[[str], tuple[str, float, float]]
"""Writes one withdrawal of analytics for a subject: (change id, t0, acknowledged at), wall
clock seconds."""


def write_through_service(case: Case) -> WriteWithdrawal:
    """The default: the service's write path in this process; t0 = the change's recorded
    time (= its effective time)."""

    def write(subject: str) -> tuple[str, float, float]:
        change = case.service.change(withdraw_request(subject), actor="bench")
        case.service.record([change])
        return change.change_id, change.recorded_time.timestamp(), time.time()

    return write


def withdrawals(
    case: Case,
    subjects: list[str],
    decisions: Collector,
    window: float,
    report: Report,
    *,
    write: WriteWithdrawal | None = None,
    via: str = "the service's write path",
    target: float = 1.0,
) -> list[Withdrawal]:
    """K withdrawals of analytics through the service's write path (one at a time, each
    acknowledged before the next), with probe events; the fold makes consent.state.

    ``write`` replaces how a withdrawal is written (e.g. through the HTTP API; ``via`` names
    it in the rows) and ``target`` is the p99 target for consent change → enforced, seconds.
    """
    ack_row = "  t0 → the write acknowledged" if write else ACK_ROW
    write = write or write_through_service(case)
    kafka, plan, partitions = case.kafka, case.topics.plan, case.topics.partitions
    state = StateWatch(kafka, plan.state_topic, partitions, subjects)
    state.start()
    producer = warm_producer(case)
    rng = random.Random(11)
    period = ProbeSchedule.period
    runs: list[Withdrawal] = []
    try:
        for subject in subjects:
            probes: list[Probe] = []
            lead = 0.2 + rng.uniform(0, period)  # ~10 probes before t0, at a random phase
            begin = time.time() + 0.02
            schedule = ProbeSchedule(subject, begin, begin + lead + window)
            thread = threading.Thread(target=probe_loop, args=(case, producer, schedule, probes))
            thread.start()
            time.sleep(max(0.0, begin + lead - time.time()))
            change_id, t0, acked = write(subject)
            thread.join()
            runs.append(Withdrawal(change_id, t0, acked, probes))
        producer.flush(30)
        ids = [p.event_id for w in runs for p in w.probes]
        missing = decisions.wait_for(ids, timeout=60)
        unfolded = state.wait_for([w.change_id for w in runs], timeout=30)
    finally:
        state.stop()
    results = [enforcement(w, decisions) for w in runs]
    latencies = [r.latency for r in results]
    anomalies = Counter(a for r in results for a in r.anomalies)
    reasons = Counter(
        got[1]
        for w in runs
        for p in w.probes
        if p.produced >= w.t0 and (got := decisions.get(p.event_id)) is not None and not got[0]
    )
    in_state = [state.get(w.change_id) for w in runs]
    inf = float("inf")
    report.add(
        f"withdrawal → in consent.state, the fold's record CreateTime ({len(runs)} withdrawals "
        f"of analytics through {via})",
        ms_summary([s[0] / 1000 - w.t0 if s else inf for w, s in zip(runs, in_state, strict=True)])
        + (f"; {unfolded} not in consent.state after 30 s" if unfolded else ""),
    )
    report.add(
        "withdrawal → visible in consent.state (read_committed consumer)",
        ms_summary([s[1] - w.t0 if s else inf for w, s in zip(runs, in_state, strict=True)]),
    )
    verdict = "met" if pct(latencies, 0.99) < target else "NOT met"
    shown_target = f"{target:g} s" if target >= 1 else f"{target * 1000:g} ms"
    report.add(
        f"consent change → enforced ({len(runs)} withdrawals of analytics, a probe event every "
        f"{period * 1000:.0f} ms)",
        f"{ms_summary(latencies)}; target p99 < {shown_target}: {verdict}",
    )
    report.add(
        ack_row,
        ms_summary([w.acked - w.t0 for w in runs]),
    )
    report.add(
        "  probes after t0: denied (reasons) / allowed (of which stamped after the ack)",
        ", ".join(f"{k}: {v}" for k, v in reasons.items())
        + f" / {sum(r.allowed_after_t0 for r in results)}"
        + f" ({sum(r.allowed_after_ack for r in results)})",
    )
    report.add(
        "  probes before t0 denied: as withdrawn (judged after the withdrawal) / as "
        "consent_state_stale (judged while the router held the unsettled withdrawal)",
        f"{sum(r.withdrawn_before_t0 for r in results)} / "
        f"{sum(r.held_before_t0 for r in results)} of "
        f"{sum(1 for w in runs for p in w.probes if p.produced < w.t0)}",
    )
    shown = ", ".join(f"{k}: {v}" for k, v in anomalies.most_common()) or "none"
    report.add("  anomalies", f"{shown} ({missing} decisions missing after 60 s)")
    if case.fold is not None:
        report.add("  consent fold so far", case.fold.counters())
    return runs


# -- event → sink --------------------------------------------------------------------------


def sink_latency(
    case: Case,
    subjects: list[str],
    decisions: Collector,
    report: Report,
    *,
    count: int,
    rate: float,
) -> None:
    sink = Collector(
        case.kafka, case.topics.plan.analytics_topic, case.topics.partitions, sink_record_of
    )
    sink.start()
    producer = warm_producer(case)
    raw_ts: dict[str, int] = {}

    def on_ack(event_id: str) -> Callable[[KafkaError | None, Message], None]:
        def record(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                raw_ts[event_id] = msg.timestamp()[1]

        return record

    rng = random.Random(7)
    ids: list[str] = []
    start = time.monotonic()
    try:
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            subject = rng.choice(subjects)
            company = rng.choice(case.topics.plan.partners)
            event_id, value = browsing_event(case.serde, subject, datetime.now(UTC), company)
            producer.produce(
                case.raw, key=subject.encode(), value=value, on_delivery=on_ack(event_id)
            )
            producer.poll(0)
            ids.append(event_id)
        took = time.monotonic() - start
        producer.flush(30)
        missing = sink.wait_for(ids, timeout=60)
        decisions.wait_for(ids, timeout=10)
    finally:
        sink.stop()
    to_sink = [(sink.found[i] - raw_ts[i]) / 1000 for i in ids if i in sink.found and i in raw_ts]
    to_decision = [
        (decisions.found[i][2] - raw_ts[i]) / 1000
        for i in ids
        if i in decisions.found and i in raw_ts
    ]
    report.add(
        f"event → analytics sink record ({count:,} events at {count / took:,.0f}/s)",
        ms_summary(to_sink) + (f"; {missing} never reached the sink" if missing else ""),
    )
    report.add("event → decision record (same events)", ms_summary(to_decision))


# -- startup ------------------------------------------------------------------------------


def grant(subject: str, purpose: str, recipient: str | None, at: datetime) -> ConsentChange:
    """A GRANT recorded and effective at ``at`` (built here: the startup phase writes
    consent.state itself, without the service or the fold)."""
    return ConsentChange(
        change_id=str(uuid.uuid4()),
        subject_id=subject,
        action=ConsentAction.GRANT,
        purpose=purpose,
        recipient=recipient,
        effective_time=at,
        recorded_time=at,
        notice_version="2019-03",
        method=ConsentMethod.WEB_FORM,
    )


def consent_changes(rng: random.Random, subject: str, partners: list[str]) -> list[ConsentChange]:
    """1 analytics grant + 1-4 partner grants, recorded now (the case's mix)."""
    at = datetime.now(UTC)
    changes = [grant(subject, "analytics", None, at)]
    for partner in rng.sample(partners, rng.randint(1, 4)):
        changes.append(grant(subject, "partner_sharing", partner, at))
    return changes


def write_compacted(
    producer: Producer, serde: Serde, topic: str, subjects: int, partners: list[str]
) -> float:
    """One consent.state record per subject (its full timeline, as after compaction; key =
    subject id, murmur2 like the fold's partitions), built with ``timeline.apply``.
    Returns the seconds taken."""
    rng = random.Random(2019)
    failed: list[KafkaError] = []

    def on_ack(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(err)

    started = time.monotonic()
    for i in range(subjects):
        subject = f"subject-{i:07d}"
        folded: Timeline | None = None
        for change in consent_changes(rng, subject, partners):
            folded = apply(folded, change)
        assert folded is not None
        value = serde.encode(folded.record)
        while True:
            try:
                producer.produce(topic, key=subject.encode(), value=value, on_delivery=on_ack)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if (i + 1) % 100_000 == 0:
            say(f"      {i + 1:,}/{subjects:,} subjects written")
    if producer.flush(300) or failed:
        raise RuntimeError(f"consent.state records not acknowledged: {failed[:3]}")
    return time.monotonic() - started


def startup(kafka: Kafka, workdir: Path, subjects: int, partitions: int, report: Report) -> None:
    partners = partner_ids(PARTNERS)
    plan = PolicyPlan(partners, partners[:3], suffix=f".{kafka.tag}-s{subjects}")
    topics = TopicSet(plan, partitions)
    every = [*plan.core_topics(), *plan.sink_topics()]  # the router refuses missing outputs
    kafka.create(every, partitions, compact=(plan.state_topic,))
    policy = workdir / f"policy-s{subjects}.yaml"
    policy.write_text(policy_yaml(plan))
    producer = Producer(kafka.settings.producer_config(kafka.bootstrap, **{"linger.ms": 20}))
    serde = Serde.from_settings(kafka.settings)
    wrote = (
        write_compacted(producer, serde, plan.state_topic, subjects, plan.partners)
        if subjects
        else 0.0
    )
    records = kafka.count(plan.state_topic, partitions)
    say(f"      {records:,} consent.state records written in {wrote:.1f} s")
    router = RouterProc(kafka, topics, policy, workdir)
    try:
        t_ready, body = router.wait_ready(timeout=3600)
        rss = proc_status_mib(router.proc.pid, "VmRSS")
        hwm = proc_status_mib(router.proc.pid, "VmHWM")
    finally:
        router.stop()
    took = t_ready - router.started
    loaded = sum(int(v) for v in body.get("consent_positions", {}).values())
    empty = report.startups.get(0)
    if not subjects:
        extra = "process start, group join, empty recovery"
    elif empty is not None and took > empty[0]:
        extra = f"{records / (took - empty[0]):,.0f} records/s beyond the empty start"
    else:
        extra = f"{records / took:,.0f} records/s overall"
    report.add(
        f"startup, {subjects:,} subjects: process start → ready",
        f"{took:.1f} s ({loaded:,} of {records:,} records loaded; {extra})",
    )
    per_million = ""
    if subjects and empty is not None:
        per_million = f"; ≈ {(rss - empty[1]) / subjects * 1e6:,.0f} MiB per 1M subjects"
    report.add(
        f"startup, {subjects:,} subjects: router RSS at ready",
        f"{rss:.0f} MiB (peak {hwm:.0f} MiB{per_million})",
    )
    report.startups[subjects] = (took, rss)


def limits_note(report: Report) -> str | None:
    """What limited the router's throughput in this run, from the measured figures."""
    r = report.rates.get("router")
    if r is None:
        return None
    share = r.cpu_seconds / r.seconds
    if share >= 0.8:
        verdict = (
            f"CPU-bound: the router used {share:.0%} of one core, and one faust worker is one "
            "Python thread (more throughput = more partitions x worker processes)"
        )
    elif r.machine_busy >= 0.9:
        verdict = (
            f"CPU-starved: the router got {share:.0%} of a core while all cores were "
            f"{r.machine_busy:.0%} busy (broker and other processes); rerun on a quieter machine"
        )
    else:
        verdict = (
            f"waiting: the router used {share:.0%} of a core with the machine "
            f"{r.machine_busy:.0%} busy, so it waited on something (gate, producer, fetches)"
        )
    per_event = [f"router {1e6 * r.cpu_seconds / r.events:,.0f}"]
    for name, label in (("B", "faust pass-through"), ("A", "confluent-kafka pipe")):
        if name in report.rates:
            t = report.rates[name]
            per_event.append(f"{label} {1e6 * t.cpu_seconds / t.events:,.0f}")
    if r.stalled:
        verdict += "; and it stalled before the end (see the 'router STALLED' row)"
    return (
        f"What limits throughput (this run): {verdict}. CPU µs per event: "
        f"{', '.join(per_event)}. Per event the router decodes the record, waits at the gate, "
        "decides 39 sinks, projects and encodes ~3.5 sink records and a decision (plus "
        "provisions) and hands ~5 records to aiokafka's producer (pure-Python partitioner and "
        "batching), where the pass-through hands over 1 and the pipe does everything in "
        "librdkafka's C. The time in handle() (row above) is the router's own share; the rest "
        "of the wall time is faust/aiokafka per-record machinery. `--profile` runs the router "
        "under cProfile for a breakdown."
    )


def profile_summary(profile: Path, top: int = 25) -> str:
    """The profile's top functions by own time, written next to it and returned as markdown."""
    if not profile.exists():
        return f"(no profile written to {profile})"
    out = io.StringIO()
    stats = pstats.Stats(str(profile), stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    text = out.getvalue()
    profile.with_suffix(".txt").write_text(text)
    head = text.split("ncalls", 1)[-1].splitlines()[1 : top + 1]
    return "\n".join(
        [
            f"Router under cProfile (its throughput above is slowed by the profiler); top {top} "
            f"by own time (full: {profile.with_suffix('.txt')}):",
            "",
            "```",
            "   ncalls  tottime  percall  cumtime  percall filename:lineno(function)",
            *head,
            "```",
        ]
    )


# -- main ---------------------------------------------------------------------------------

PHASES = ("baselines", "router", "withdraw", "latency", "startup")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000, help="N browsing events")
    parser.add_argument("--subjects", type=int, default=10_000, help="S subjects with consent")
    parser.add_argument(
        "--bootstrap", help="HOST:PORT (default: CONSENTGATE_BOOTSTRAP, else open_cluster())"
    )
    parser.add_argument("--partitions", type=int, default=6, choices=(3, 6))
    parser.add_argument("--withdrawals", type=int, default=50, help="K for consent → enforced")
    parser.add_argument("--window", type=float, default=1.5, help="probe seconds after t0")
    parser.add_argument("--latency-events", type=int, default=3000)
    parser.add_argument("--latency-rate", type=float, default=200.0, help="events/s")
    parser.add_argument("--startup-subjects", type=int, nargs="*", default=[0, 100_000])
    parser.add_argument("--big", action="store_true", help="also startup with 1,000,000 subjects")
    parser.add_argument("--only", nargs="+", choices=PHASES, help="run only these phases")
    parser.add_argument("--note", default="", help="a remark for the results file")
    parser.add_argument("--profile", action="store_true", help="run the router under cProfile")
    parser.add_argument("--keep", action="store_true", help="keep topics and groups (debugging)")
    return parser.parse_args(argv)


def run_baselines(case: Case, report: Report) -> None:
    say(f"[A] confluent-kafka pipe, {PIPE_RUNS} runs")
    runs = sorted((baseline_pipe(case, i) for i in range(PIPE_RUNS)), key=lambda t: t.rate)
    median = runs[len(runs) // 2]
    report.rates["A"] = median
    others = ", ".join(f"{t.rate:,.0f}" for t in runs)
    report.add(
        f"baseline A: confluent-kafka consume→produce pipe (median of {PIPE_RUNS}: {others})",
        median.describe(),
    )
    say("[B] faust pass-through agent")
    report.rates["B"] = baseline_faust(case)
    report.add("baseline B: faust pass-through agent", report.rates["B"].describe())


def run_router(case: Case, args: argparse.Namespace, phases: set[str], report: Report) -> None:
    """Throughput, then (same router) consent change → enforced and event → sink."""
    say("[router] consentgate router" + (" under cProfile" if args.profile else ""))
    profile = case.workdir / "router.prof" if args.profile else None
    router = RouterProc(case.kafka, case.topics, case.policy, case.workdir, profile=profile)
    try:
        rate = router_throughput(case, router, report)
        report.rates["router"] = rate
        report.add("router throughput", rate.describe())
        if rate.detail:
            report.add(
                "  time in the router's handle() (gate, decide, hand to producer)", rate.detail
            )
        for name in ("A", "B"):
            if name in report.rates:
                ratio = rate.rate / report.rates[name].rate
                report.add(f"  router / baseline {name}", f"{ratio:.3f} (1 : {1 / ratio:,.1f})")
        dlq = case.kafka.count(case.topics.plan.dlq_topic, case.topics.partitions)
        report.add("  dead letters", f"{dlq:,}")
        decisions = Collector(
            case.kafka, case.topics.plan.decisions_topic, case.topics.partitions, decision_of
        )
        decisions.start()
        try:
            k = min(args.withdrawals, len(case.subjects) // 2)
            if "withdraw" in phases:
                say(f"[withdraw] {k} withdrawals")
                withdrawals(case, case.subjects[:k], decisions, args.window, report)
            if "latency" in phases:
                say(f"[latency] {args.latency_events:,} events at {args.latency_rate:.0f}/s")
                sink_latency(
                    case,
                    case.subjects[k:],
                    decisions,
                    report,
                    count=args.latency_events,
                    rate=args.latency_rate,
                )
        finally:
            decisions.stop()
        rss = proc_status_mib(router.proc.pid, "VmRSS")
        report.add("router RSS after these phases", f"{rss:.0f} MiB")
        report.add("router log lines with ERROR / Traceback", f"{router.log_problems()}")
    finally:
        router.stop()
    if profile is not None:
        report.notes.append(profile_summary(profile))


def run(args: argparse.Namespace, kafka: Kafka, workdir: Path, report: Report) -> None:
    phases = set(args.only or PHASES)
    if phases & {"baselines", "router", "withdraw", "latency"}:
        subjects = min(args.subjects, args.events)
        case = make_case(kafka, workdir, args.partitions, subjects, args.events)
        report.notes.append(
            f"Setup: {subjects:,} subjects with {PARTNERS} partners (1 analytics + 1-4 partner "
            "grants each, appended to consent.changes through the consent service's write path "
            "and folded into consent.state by a `consentgate consent fold` process, which keeps "
            f"running for the withdrawals), {case.events:,} browsing events timed between the "
            "last grant's recorded time and their production, produced once the fold had "
            "committed every grant and before anything reads them; policy: 1 analytics + "
            f"{PARTNERS} partner browsing sinks. Per event the router writes 1 decision, ~1 + "
            "2.5 sink records and (first time per subject and partner) a provision; the "
            "baselines write 1 record per event."
        )
        report.notes.append(
            "How: throughput counts from the first sign of work (router: /readyz 200; faust: "
            "first output; pipe: partition assignment) to the last record (sums of high "
            "watermarks, polled every 0.2 s). Consent change → enforced: t0 is the WITHDRAW's "
            "recorded time (set by the service, = its effective time) just before it is "
            "appended to consent.changes; the fold then writes consent.state (the 'in "
            "consent.state' rows: the fold's record CreateTime, and when a read_committed "
            "consumer saw it). Probes are stamped with their produce time; the latency is "
            "quantized by the probe period. The router's gate waits for consent.state (the "
            "fold's output), not consent.changes, so a probe stamped after t0 is allowed until "
            "the router has read either the withdrawal from consent.changes (the subject is "
            "then held as unsettled: consent_state_stale) or the fold's state record. Event → "
            "sink uses Kafka CreateTimes (ms) of the raw and the sink record."
        )
        try:
            if "baselines" in phases:
                run_baselines(case, report)
            if phases & {"router", "withdraw", "latency"}:
                run_router(case, args, phases, report)
            if case.fold is not None:
                report.add(
                    "consent fold log lines with ERROR / Traceback", str(case.fold.log_problems())
                )
        finally:
            case.close()
    if "startup" in phases:
        for size in sorted({*args.startup_subjects, *([1_000_000] if args.big else [])}):
            say(f"[startup] {size:,} subjects")
            startup(kafka, workdir, size, args.partitions, report)


def code_version() -> str:
    """Which router code ran: the commit, uncommitted changes under services/, the import path."""
    import consentgate  # noqa: PLC0415 - only for its location

    where = Path(consentgate.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "services"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return f"code: {where} (no git)"
    changed = f"{len(dirty)} uncommitted changes under services/" if dirty else "clean"
    return f"code: commit {head}, {changed}; consentgate imported from {where}"


def shown_args() -> str:
    """The command line, with --note's text (it is printed below the table) elided."""
    out: list[str] = []
    skip = False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--note":
            out.append("--note …")
            skip = True
        elif arg.startswith("--note="):
            out.append("--note …")
        else:
            out.append(arg)
    return " ".join(out)


def render(args: argparse.Namespace, bootstrap: str, report: Report, started: datetime) -> str:
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    lines = [
        "# Router benchmark (bench/router_bench.py)",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC (the run took {minutes:.1f} min)",
        f"- machine: nproc {os.cpu_count()}, {cpu_model()}, {mem_total_gib():.1f} GiB RAM; "
        f"load average at start {report.load_at_start}, at end {loadavg()}",
        f"- Python {platform.python_version()}; {KAFKA} ({bootstrap})",
        f"- {report.code} (at the start of the run)",
        f"- command: `bench/router_bench.py {shown_args()}`; events {args.events:,}, "
        f"subjects {min(args.subjects, args.events):,}, partitions {args.partitions}, "
        f"withdrawals {args.withdrawals}, latency probe {args.latency_events:,} events at "
        f"{args.latency_rate:.0f}/s",
        "",
        "| what | result |",
        "|---|---|",
        *(f"| {what} | {result} |" for what, result in report.rows),
        "",
        *(f"{note}\n" for note in report.notes),
    ]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that finally blocks run
    if args.bootstrap:
        os.environ["CONSENTGATE_BOOTSTRAP"] = args.bootstrap
    started = datetime.now(UTC)
    tag = f"bench-{started:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:4]}"
    report = Report(load_at_start=loadavg(), code=code_version())
    workdir = Path(tempfile.mkdtemp(prefix="router-bench-"))
    failed = False
    with open_cluster() as cluster:
        say(f"cluster: {cluster.kind} at {cluster.bootstrap}; tag {tag}; files in {workdir}")
        kafka = Kafka(cluster.bootstrap, tag)
        try:
            run(args, kafka, workdir, report)
        except Exception as exc:  # noqa: BLE001 - keep what was measured, say what broke
            failed = True
            report.add("FAILED", f"{type(exc).__name__}: {exc}")
        finally:
            _stop_children()
            if args.keep:
                say(f"[cleanup] skipped (--keep): topics and groups contain {tag}")
            else:
                say("[cleanup]")
                kafka.cleanup()
    note = limits_note(report)
    if note:
        report.notes.append(note)
    if args.note:
        report.notes.append(args.note)
    text = render(args, cluster.bootstrap, report, started)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    say("")
    say(text)
    say(f"written to {RESULTS.relative_to(REPO)}; logs in {workdir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
