"""Router v2 benchmark: throughput against a same-fan-out pipe and v1, latencies, view load.

    .venv/bin/python bench/router_v2_bench.py [--events 100000] [--v2-code DIR] [--v1-code DIR]
        [--quick] [--only PHASE ...] [--bootstrap HOST:PORT]

One run, phases one after another on one case (bench/router_bench.py's ``make_case``: a
consent fold process, 10,000 subjects with 1 analytics + 1-4 of 38 partner grants each through
the consent service's write path, folded into consent.state, then N browsing events timed
after the grants, as a backlog; policy 1 analytics + 38 partner browsing sinks; 6 partitions).
Each throughput phase gets fresh output topics and a fresh consumer group on the same input:

- ``v2``: router v2, 1 process; afterwards its outputs are counted (read_committed) to get
  the fan-out (output records per event) and the mean value sizes;
- ``v2x2``: router v2, 2 processes (same group, different instance ids);
- ``pipe``: bench/fanout_pipe.py (a subprocess): consume raw, produce the same number of
  records per event (1 decision + the rest spread over 39 sink topics, the router's mean value
  sizes), murmur2; transactional (offsets in the transaction every 100 ms), then plain
  (idempotent producer);
- ``v1``: the faust router of commit 71a17d9 (``--v1-code``: its ``services`` directory, e.g.
  from ``git worktree add /tmp/v1bench 71a17d9``), on the first ``--v1-events`` of the backlog;
- ``latency``: router v2 restarted on the ``v2`` phase's group (caught up), events produced
  live at half the ``v2`` rate (then at each ``--latency-rate``) for ``--latency-seconds``;
  event → analytics sink record by Kafka CreateTimes, and event → visible to a read_committed
  consumer; with the router's CPU share and its gate queue / input lag maxima;
- ``withdraw``: with that router and the case's fold, K withdrawals of analytics through the
  consent service's write path (router_bench.withdrawals: probe events every 20 ms; the
  withdrawal's recorded time → the fold's consent.state record, read_committed), plus the
  retraction each withdrawal causes: its CreateTime marks when the router's view showed it;
- ``startup``: for each ``--startup-subjects`` size, a consent.state topic with one
  realistic ConsentTimeline per subject (real timelines, encoded by the serde; beyond the
  first 2,000 subjects, their bytes with the subject id and change ids replaced), produced in
  big batches; then a router v2: process start → /readyz 200, RSS at that moment.

Events/s: from the first decision visible to a read_committed consumer to the N-th (the
SPEC of shared/peers: N / (t_last - t_first)), also without the first commit's batch, and from
process start. CPU: utime+stime of the process(es) from /proc, whole life until stop, per
event. Peak RSS: VmHWM. ``--v2-code DIR`` puts DIR first on PYTHONPATH for the v2 routers
(e.g. a worktree of a commit); without it they run the checkout's package.
Writes bench/results/router-v2.md (``--quick``: a smoke run, results only printed).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))

import router_bench as rb
from consentgate.consent.timeline import Timeline, apply
from consentgate.serde import Serde
from consentgate_dev.cluster import open_cluster
from consentgate_dev.demo.policygen import PolicyPlan, partner_ids, policy_yaml

REPO = rb.REPO
RESULTS = REPO / "bench" / "results" / "router-v2.md"
PIPE = Path(__file__).resolve().parent / "fanout_pipe.py"
V1_COMMIT = "71a17d9"  # the last faust router
PHASES = ("v2", "v2x2", "pipe", "v1", "latency", "withdraw", "startup")
say = rb.say


# -- topics: same inputs, fresh outputs per phase -------------------------------------------


@dataclass(frozen=True)
class OutPlan(PolicyPlan):
    """A PolicyPlan whose output topics carry a further suffix (inputs stay the case's)."""

    out: str = ""
    state: str = ""  # another consent.state topic (v1: a plain copy of the fold's)

    def _o(self, base: str) -> str:
        return f"{base}{self.suffix}{self.out}"

    @property
    def state_topic(self) -> str:
        return self.state or super().state_topic

    @property
    def analytics_topic(self) -> str:
        return self._o("events.browsing.analytics.v1")

    @property
    def decisions_topic(self) -> str:
        return self._o("consentgate.decisions.v1")

    @property
    def provisions_topic(self) -> str:
        return self._o("consentgate.provisions.v1")

    @property
    def dlq_topic(self) -> str:
        return self._o("consentgate.dlq.v1")

    def partner_topic(self, partner: str, kind: str = "browsing") -> str:
        return self._o(f"partner.{partner}.{kind}.v1")

    def outputs(self) -> list[str]:
        return [self.decisions_topic, self.provisions_topic, self.dlq_topic, *self.sink_topics()]


def out_plan(case: rb.Case, name: str, workdir: Path, state: str = "") -> tuple[OutPlan, Path]:
    """Fresh output topics (created) and a policy file naming them, for phase ``name``."""
    base = case.topics.plan
    plan = OutPlan(
        base.partners, base.score_partners, suffix=base.suffix, out=f".{name}", state=state
    )
    case.kafka.create(plan.outputs(), case.topics.partitions)
    policy = workdir / f"policy-{name}.yaml"
    policy.write_text(policy_yaml(plan))
    return plan, policy


# -- processes ------------------------------------------------------------------------------


class Proc(rb.RouterProc):
    """A router (v1 or v2, by ``code``) or any command, with readiness and /proc figures."""

    def __init__(
        self,
        kafka: rb.Kafka,
        workdir: Path,
        label: str,
        *,
        cmd: list[str] | None = None,
        plan: PolicyPlan | None = None,
        policy: Path | None = None,
        app_id: str = "",
        instance: str = "",
        code: str | None = None,
        extra: tuple[str, ...] = (),
        environ: dict[str, str] | None = None,
    ) -> None:
        self.port = rb.free_port()
        self.app_id = app_id
        self.profile = None
        self.log = workdir / f"{label}.log"
        if cmd is None:
            assert plan is not None and policy is not None
            cmd = [
                sys.executable,
                *("-m", "consentgate", "router", "--policy", str(policy)),
                *("--app-id", app_id, "--instance-id", instance, "--web-port", str(self.port)),
                *plan.router_topic_args(),
                *extra,
            ]
        env = {
            "CONSENTGATE_BOOTSTRAP": kafka.bootstrap,
            "CONSENTGATE_PSEUDONYM_MASTER_KEY": rb.MASTER_KEY,
            "CONSENTGATE_STATE_DIR": str(workdir / f"state-{label}"),
            **(environ or {}),
        }
        if code:
            env["PYTHONPATH"] = os.pathsep.join(
                x for x in (code, env.get("PYTHONPATH", os.environ.get("PYTHONPATH"))) if x
            )
        rb.ServiceProcess.__init__(self, [], env, self.log, self.port, append=False, program=cmd)

    def cpu(self) -> float:
        with contextlib.suppress(OSError):
            self._cpu = rb.proc_cpu_seconds(self.pid)
        return getattr(self, "_cpu", 0.0)

    def mib(self, key: str) -> float:
        with contextlib.suppress(OSError):
            setattr(self, f"_{key}", rb.proc_status_mib(self.pid, key))
        return float(getattr(self, f"_{key}", float("nan")))


# -- counting what is visible (read_committed) ----------------------------------------------


class Visible(threading.Thread):
    """Counts the records of a topic visible to a read_committed consumer, from offset 0."""

    def __init__(self, kafka: rb.Kafka, topic: str, partitions: int) -> None:
        super().__init__(daemon=True, name=f"visible-{topic}")
        self.count = 0
        self.first: float | None = None  # monotonic time of the first record
        self.at_first = 0  # records in the first batch seen
        self._halt = threading.Event()
        self._c = Consumer(
            {
                **kafka.conf,
                "group.id": f"{kafka.tag}-visible",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        self._c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                batch = self._c.consume(5000, 0.05)
                n = sum(1 for m in batch if m.error() is None)
                if n and self.first is None:
                    self.first, self.at_first = time.monotonic(), n
                self.count += n
        finally:
            self._c.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def count_outputs(kafka: rb.Kafka, topics: list[str], partitions: int) -> dict[str, list[int]]:
    """topic -> [records, value bytes], read_committed, up to the end of every partition."""
    c = Consumer(
        {
            **kafka.conf,
            "group.id": f"{kafka.tag}-count",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    tps = [TopicPartition(t, p, 0) for t in topics for p in range(partitions)]
    ends = {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
    todo = {k for k, end in ends.items() if end > 0}
    c.assign([tp for tp in tps if (tp.topic, tp.partition) in todo])
    out = {t: [0, 0] for t in topics}
    deadline = time.monotonic() + 300
    try:
        while todo and time.monotonic() < deadline:
            for m in c.consume(10000, 0.5):
                if m.error() is None:
                    tally = out[str(m.topic())]
                    tally[0] += 1
                    tally[1] += len(m.value() or b"")
            if todo:
                pos = c.position([TopicPartition(t, p) for t, p in todo])
                todo = {
                    (tp.topic, tp.partition)
                    for tp in pos
                    if tp.offset < ends[tp.topic, tp.partition]
                }
    finally:
        c.close()
    return out


def plain_copy(kafka: rb.Kafka, topic: str, partitions: int, name: str) -> str:
    """``topic`` (read_committed) copied partition by partition with a plain idempotent
    producer into a new compacted topic ``<topic>.<name>``; returns its name."""
    copy = f"{topic}.{name}"
    kafka.create([copy], partitions, compact=(copy,))
    c = Consumer(
        {
            **kafka.conf,
            "group.id": f"{kafka.tag}-copy",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    producer = Producer(kafka.settings.producer_config(kafka.bootstrap))
    ends = [
        c.get_watermark_offsets(TopicPartition(topic, q), timeout=10)[1] for q in range(partitions)
    ]
    todo = {q for q, end in enumerate(ends) if end > 0}
    c.assign([TopicPartition(topic, q, 0) for q in todo])
    copied = 0
    deadline = time.monotonic() + 300
    try:
        while todo:
            if time.monotonic() > deadline:
                raise RuntimeError(f"copying {topic}: partitions {sorted(todo)} unfinished")
            for m in c.consume(1000, 0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        todo.discard(m.partition() or 0)
                    continue
                while True:
                    try:
                        producer.produce(copy, m.value(), m.key(), partition=m.partition() or 0)
                        break
                    except BufferError:
                        producer.poll(0.05)
                copied += 1
            producer.poll(0)
    finally:
        c.close()
    if producer.flush(60):
        raise RuntimeError(f"copy of {topic} not acknowledged")
    say(f"      {copied:,} records of {topic} copied to {copy}")
    return copy


# -- one throughput phase -------------------------------------------------------------------


@dataclass
class Run:
    label: str
    events: int
    procs: int
    eps: float = float("nan")  # N / (t_last - t_first)
    eps_after_first: float = float("nan")
    eps_from_start: float = float("nan")
    first_after_s: float = float("nan")
    cpu_s: float = float("nan")
    cpu_window_us: float = float("nan")
    rss_mib: float = float("nan")
    load: str = ""
    busy: float = float("nan")  # share of all cores busy (whole machine) during the run
    note: str = ""

    @property
    def cpu_us(self) -> float:
        return 1e6 * self.cpu_s / self.events


def measure(  # noqa: PLR0917 - one call shape, used four times
    kafka: rb.Kafka,
    label: str,
    procs: list[Proc],
    decisions: str,
    partitions: int,
    n: int,
    stall: float = 120.0,
) -> Run:
    """Wait for N decisions visible (read_committed), then stop the processes."""
    load0, busy0 = os.getloadavg()[0], rb.machine_busy()
    seen = Visible(kafka, decisions, partitions)
    seen.start()
    spawned = min(p.started for p in procs)
    run = Run(label, n, len(procs))
    cpu_first: float | None = None
    last, last_change = -1, time.monotonic()
    try:
        while seen.count < n:
            time.sleep(0.05)
            now = time.monotonic()
            if cpu_first is None and seen.first is not None:
                cpu_first = sum(p.cpu() for p in procs)
            for p in procs:
                p.mib("VmHWM")
            if seen.count != last:
                last, last_change = seen.count, now
            dead = [p for p in procs if p.proc.poll() is not None]
            if dead:
                raise RuntimeError(f"{label}: {dead[0].log.name} exited {dead[0].proc.returncode}")
            if now - last_change > stall:
                raise RuntimeError(
                    f"{label}: no progress for {stall:.0f} s at {seen.count:,}/{n:,}"
                )
        t_last = time.monotonic()
        cpu_last = sum(p.cpu() for p in procs)
        assert seen.first is not None and cpu_first is not None
        span = t_last - seen.first
        run.eps = n / span
        run.eps_after_first = (n - seen.at_first) / span
        run.eps_from_start = n / (t_last - spawned)
        run.first_after_s = seen.first - spawned
        run.cpu_window_us = 1e6 * (cpu_last - cpu_first) / max(1, n - seen.at_first)
    finally:
        run.cpu_s = sum(p.cpu() for p in procs)  # just before SIGTERM, start-up included
        run.rss_mib = sum(p.mib("VmHWM") for p in procs)
        for p in procs:
            p.stop()
        seen.stop()
        run.load = f"{load0:.2f}→{os.getloadavg()[0]:.2f}"
        run.busy = rb.busy_share(busy0, rb.machine_busy())
    say(
        f"  => {label}: {run.eps:,.0f} events/s, {run.cpu_us:,.0f} CPU µs/event, "
        f"peak RSS {run.rss_mib:.0f} MiB"
    )
    return run


def routers(  # noqa: PLR0917
    kafka: rb.Kafka,
    case: rb.Case,
    name: str,
    count: int,
    code: str | None,
    args: argparse.Namespace,
    plan_policy: tuple[OutPlan, Path] | None = None,
    label: str = "",
) -> tuple[list[Proc], OutPlan]:
    plan, policy = plan_policy or out_plan(case, name, case.workdir)
    app = f"{kafka.tag}-{name}"
    extra = tuple(args.router_arg)
    procs = [
        Proc(
            kafka,
            case.workdir,
            f"{label or name}-{i}",
            plan=plan,
            policy=policy,
            app_id=app,
            instance=f"{app}-i{i}",
            code=code,
            extra=extra,
        )
        for i in range(count)
    ]
    return procs, plan


# -- latency and withdrawal (live, one router) ----------------------------------------------


class Arrivals(threading.Thread):
    """Reads a sink topic from its end, read_committed: per event id (cg-event-id header) the
    record's CreateTime and when it became visible here; per consent change id of a
    retraction (cg-retraction header) the same."""

    def __init__(self, kafka: rb.Kafka, topic: str, partitions: int) -> None:
        super().__init__(daemon=True, name=f"arrivals-{topic}")
        self.events: dict[str, tuple[int, float]] = {}
        self.retractions: dict[str, tuple[int, float]] = {}
        self._halt = threading.Event()
        self._c = Consumer(
            {
                **kafka.conf,
                "group.id": f"{kafka.tag}-arrivals",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        ends = [
            self._c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        ]
        self._c.assign([TopicPartition(topic, p, e) for p, e in enumerate(ends)])

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for m in self._c.consume(2000, 0.02):
                    if m.error() is not None:
                        continue
                    seen = time.time()
                    headers: dict[str, bytes] = {}
                    for k, v in m.headers() or []:  # type: ignore[str-unpack]  # a list of pairs
                        headers[k] = v if isinstance(v, bytes) else b""
                    if "cg-retraction" in headers:
                        change = headers.get("cg-consent-change-id", b"").decode()
                        self.retractions[change] = (m.timestamp()[1], seen)
                    elif "cg-event-id" in headers:
                        self.events[headers["cg-event-id"].decode()] = (m.timestamp()[1], seen)
        finally:
            self._c.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


class Peaks(threading.Thread):
    """The router's gate queue and input lag gauges (/metrics), their maxima while running."""

    def __init__(self, router: Proc) -> None:
        super().__init__(daemon=True, name="peaks")
        self.router = router
        self.waiting = self.lag = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.5):
            m = self.router.metrics()
            self.waiting = max(self.waiting, m.get("consentgate_gate_waiting_events", 0.0))
            self.lag = max(self.lag, m.get("consentgate_input_lag", 0.0))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def ms(values: list[float]) -> str:
    return rb.ms_summary(values)


def live_latency(
    case: rb.Case, plan: OutPlan, rate: float, seconds: float, subjects: list[str]
) -> list[tuple[str, str]]:
    """Events produced live at ``rate`` for ``seconds``; event → analytics sink record."""
    kafka, p = case.kafka, case.topics.partitions
    sink = Arrivals(kafka, plan.analytics_topic, p)
    sink.start()
    producer = rb.warm_producer(case)
    rng = random.Random(7)
    sent: dict[str, int] = {}
    tick = 0.01
    start = time.monotonic()
    i = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate) + 1
        while i < due:
            subject = rng.choice(subjects)
            company = rng.choice(plan.partners)
            now = datetime.now(UTC)
            event_id, value = rb.browsing_event(case.serde, subject, now, company)
            ts = int(now.timestamp() * 1000)
            while True:
                try:
                    producer.produce(case.raw, value, subject.encode(), timestamp=ts)
                    break
                except BufferError:
                    producer.poll(0.01)
            sent[event_id] = ts
            i += 1
        producer.poll(0)
        time.sleep(max(0.0, start + (due / rate) - time.monotonic(), tick / 10))
    took = time.monotonic() - start
    producer.flush(30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(sink.events.keys() & sent.keys()) < len(sent):
        time.sleep(0.2)
    sink.stop()
    got = [(sink.events[e], ts) for e, ts in sent.items() if e in sink.events]
    missing = len(sent) - len(got)
    return [
        (
            f"event → analytics sink record, CreateTime to CreateTime ({len(sent):,} events "
            f"live at {len(sent) / took:,.0f}/s for {took:.0f} s)",
            ms([(c - ts) / 1000 for (c, _), ts in got])
            + (f"; {missing} never reached the sink" if missing else ""),
        ),
        (
            "  event → sink record visible to a read_committed consumer (commit interval incl.)",
            ms([seen - ts / 1000 for (_, seen), ts in got]),
        ),
    ]


def withdraw_phase(case: rb.Case, plan: OutPlan, k: int, window: float) -> list[tuple[str, str]]:
    """router_bench.withdrawals (service write path, fold, probes) on this plan's topics, and
    each withdrawal's retraction: recorded time → retraction CreateTime (the view showed it)
    and → visible."""
    kafka, p = case.kafka, case.topics.partitions
    retr = Arrivals(kafka, plan.analytics_topic, p)
    retr.start()
    decisions = rb.Collector(kafka, plan.decisions_topic, p, rb.decision_of)
    decisions.start()
    report = rb.Report()
    shadow = dataclasses.replace(case, topics=rb.TopicSet(plan, p))
    try:
        runs = rb.withdrawals(shadow, case.subjects[:k], decisions, window, report)
        written = {w.change_id: w.t0 for w in runs}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(retr.retractions.keys() & written.keys()) < k:
            time.sleep(0.2)
    finally:
        decisions.stop()
        retr.stop()
    got = [(retr.retractions[c], t0) for c, t0 in written.items() if c in retr.retractions]
    rows = [
        (
            what.replace("consent change → enforced", "withdrawal → enforced, probes"),
            result.replace("target p99 < 1 s", "router_bench's old target p99 < 1 s"),
        )
        for what, result in report.rows
    ]
    rows += [
        (
            f"withdrawal → router's view shows it (its retraction's CreateTime; "
            f"{len(got)} of {len(written)})",
            ms([(c / 1000) - t0 for (c, _), t0 in got]),
        ),
        (
            "  withdrawal → retraction visible (read_committed; commit interval incl.)",
            ms([seen - t0 for (_, seen), t0 in got]),
        ),
    ]
    return rows


# -- consent view load ----------------------------------------------------------------------


def state_records(serde: Serde, subjects: int, partners: list[str]):  # type: ignore[no-untyped-def]
    """(key, value) per subject: a real timeline per subject for the first 2,000, then their
    bytes with the subject id and the change ids replaced (same lengths)."""
    rng = random.Random(2019)
    templates: list[tuple[bytes, list[bytes], bytes]] = []
    for i in range(subjects):
        subject = f"subject-{i:07d}"
        if i < 2000:
            folded: Timeline | None = None
            for change in rb.consent_changes(rng, subject, partners):
                folded = apply(folded, change)
            assert folded is not None
            value = serde.encode(folded.record)
            ids = [c.change_id.encode() for c in folded.record.changes]
            templates.append((subject.encode(), ids, value))
            yield subject.encode(), value
            continue
        old, ids, value = templates[i % len(templates)]
        new = subject.encode()
        value = value.replace(old, new)
        for cid in ids:
            value = value.replace(cid, str(uuid.uuid4()).encode())
        yield new, value


def startup_phase(
    kafka: rb.Kafka, workdir: Path, subjects: int, partitions: int, code: str | None
) -> list[tuple[str, str]]:
    partners = partner_ids(rb.PARTNERS)
    plan = PolicyPlan(partners, partners[:3], suffix=f".{kafka.tag}-s{subjects}")
    kafka.create(
        [*plan.core_topics(), *plan.sink_topics()], partitions, compact=(plan.state_topic,)
    )
    policy = workdir / f"policy-s{subjects}.yaml"
    policy.write_text(policy_yaml(plan))
    serde = Serde.from_settings(kafka.settings)
    producer = Producer(
        kafka.settings.producer_config(
            kafka.bootstrap,
            **{
                "linger.ms": 50,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 2_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
                "compression.type": "none",
            },
        )
    )
    started = time.monotonic()
    size = 0
    for n, (key, value) in enumerate(state_records(serde, subjects, partners), 1):
        while True:
            try:
                producer.produce(plan.state_topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        size += len(value)
        if n % 200_000 == 0:
            say(f"      {n:,}/{subjects:,} consent.state records produced")
    if producer.flush(600):
        raise RuntimeError("consent.state records not acknowledged")
    wrote = time.monotonic() - started
    say(f"      {subjects:,} records ({size / max(subjects, 1):.0f} B each) in {wrote:.1f} s")
    router = Proc(
        kafka,
        workdir,
        f"startup-{subjects}",
        plan=plan,
        policy=policy,
        app_id=f"{kafka.tag}-s{subjects}",
        instance=f"{kafka.tag}-s{subjects}-i0",
        code=code,
        # not --loop.view-load-timeout: `consentgate` imports faust (consent/cli.py imports
        # fold_app), and faust takes any argv entry starting with --loop as its event loop
        environ={"CONSENTGATE_ROUTER_LOOP__VIEW_LOAD_TIMEOUT": "1200"},
    )
    try:
        t_ready, _ = router.wait_ready(timeout=1800)
        rss, hwm = router.mib("VmRSS"), router.mib("VmHWM")
        cpu = router.cpu()
    finally:
        router.stop()
    took = t_ready - router.started
    return [
        (
            f"view load, {subjects:,} subjects ({size / max(subjects, 1):.0f} B per record, "
            f"{size / 2**20:,.0f} MiB): process start → /readyz 200",
            f"{took:.1f} s (CPU {cpu:.1f} s)",
        ),
        (f"  RSS at ready, {subjects:,} subjects", f"{rss:.0f} MiB (peak {hwm:.0f} MiB)"),
    ]


# -- main -----------------------------------------------------------------------------------


@dataclass
class Results:
    runs: dict[str, Run] = field(default_factory=dict)
    rows: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    v2_plan: OutPlan | None = None
    fanout: float = 4.6  # records per event; measured by the v2 phase
    decision_bytes: int = 900
    sink_bytes: int = 200

    def add(self, what: str, result: str) -> None:
        self.rows.append((what, result))
        say(f"  => {what}: {result}")


def snapshot(rev: str, workdir: Path) -> str:
    """``services/`` of commit ``rev``, extracted into the workdir (no worktree needed)."""
    where = workdir / f"code-{rev}"
    where.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "services", "schemas"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    (where / "REVISION").write_text(rev)
    return str(where / "services")


def code_of(path: str | None) -> str:
    where = Path(path) if path else REPO / "services"
    revision = where.parent / "REVISION"
    if revision.exists():
        return f"commit {revision.read_text()} (git archive into {where})"
    try:
        git = ["git", "-C", str(where)]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return str(where)
    return f"{where} at {head}" + (f" + {len(dirty)} uncommitted changes" if dirty else ", clean")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--subjects", type=int, default=10_000)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--bootstrap")
    p.add_argument("--v2-code", help="directory put first on PYTHONPATH for v2 (services/)")
    p.add_argument("--v2-commit", help="run v2 from this commit (git archive into the workdir)")
    p.add_argument("--v1-code", help="services/ of the v1 faust router")
    p.add_argument("--v1-commit", default=V1_COMMIT, help="else v1 from this commit (git archive)")
    p.add_argument("--v1-events", type=int, default=30_000)
    p.add_argument("--latency-seconds", type=float, default=20.0)
    p.add_argument(
        "--latency-rate",
        type=float,
        action="append",
        help="events/s of a further live run after the one at half the v2 rate (repeatable)",
    )
    p.add_argument("--withdrawals", type=int, default=50)
    p.add_argument("--startup-subjects", type=int, nargs="*", default=[0, 100_000, 1_000_000])
    p.add_argument("--router-arg", action="append", default=[], help="extra v2 router flag")
    p.add_argument("--only", nargs="+", choices=PHASES)
    p.add_argument("--quick", action="store_true", help="small smoke run; results not written")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.subjects, args.v1_events = 6000, 1000, 2000
        args.latency_seconds, args.withdrawals, args.startup_subjects = 5.0, 5, [0, 10_000]
    return args


def throughput(args: argparse.Namespace, case: rb.Case, res: Results, phases: set[str]) -> None:
    kafka, p, n = case.kafka, case.topics.partitions, case.events
    if "v2" in phases:
        say("[v2] router v2, 1 process")
        procs, plan = routers(kafka, case, "v2", 1, args.v2_code, args)
        res.runs["v2"] = measure(kafka, "router v2, 1 process", procs, plan.decisions_topic, p, n)
        res.v2_plan = plan
        counts = count_outputs(kafka, plan.outputs(), p)
        dec = counts[plan.decisions_topic]
        prov = counts[plan.provisions_topic]
        dlq = counts[plan.dlq_topic]
        sinks = [counts[t] for t in plan.sink_topics()]
        sink_n, sink_b = sum(s[0] for s in sinks), sum(s[1] for s in sinks)
        total = dec[0] + prov[0] + dlq[0] + sink_n
        res.fanout = total / n
        res.decision_bytes = dec[1] // max(dec[0], 1)
        res.sink_bytes = (sink_b + prov[1]) // max(sink_n + prov[0], 1)
        res.add(
            "v2 output, read_committed (the pipe's fan-out)",
            f"{total:,} records for {n:,} events = {res.fanout:.3f} per event: decisions "
            f"{dec[0]:,} (mean {res.decision_bytes} B), sink records {sink_n:,}, provisions "
            f"{prov[0]:,}, dead letters {dlq[0]:,}; sink+provision mean {res.sink_bytes} B",
        )
    if "v2x2" in phases:
        say("[v2x2] router v2, 2 processes")
        procs, plan = routers(kafka, case, "v2x2", 2, args.v2_code, args)
        res.runs["v2x2"] = measure(
            kafka, "router v2, 2 processes", procs, plan.decisions_topic, p, n
        )
    if "pipe" in phases:
        fanout = res.fanout
        for mode in ("txn", "plain"):
            say(f"[pipe-{mode}] fan-out pipe, {fanout:.3f} records per event")
            plan, _ = out_plan(case, f"pipe-{mode}", case.workdir)
            cmd = [
                sys.executable,
                str(PIPE),
                "--bootstrap",
                kafka.bootstrap,
                "--raw",
                case.raw,
                "--group",
                f"{kafka.tag}-pipe-{mode}",
                "--decisions",
                plan.decisions_topic,
                "--sinks",
                ",".join([plan.analytics_topic, *(plan.partner_topic(x) for x in plan.partners)]),
                "--fanout",
                f"{fanout:.4f}",
                "--decision-bytes",
                str(res.decision_bytes),
                "--sink-bytes",
                str(res.sink_bytes),
            ]
            if mode == "txn":
                cmd += ["--transactional", f"{kafka.tag}-pipe-txn"]
            proc = Proc(kafka, case.workdir, f"pipe-{mode}", cmd=cmd)
            label = f"fan-out pipe, {'transactional' if mode == 'txn' else 'idempotent, no txn'}"
            res.runs[f"pipe-{mode}"] = measure(kafka, label, [proc], plan.decisions_topic, p, n)
    if "v1" in phases:
        if not args.v1_code:
            res.notes.append("v1 skipped: no --v1-code")
        else:
            m = min(args.v1_events, n)
            state = plain_copy(kafka, case.topics.plan.state_topic, p, "v1copy")
            say(f"[v1] faust router ({args.v1_code}), until {m:,} decisions")
            procs, plan = routers(
                kafka,
                case,
                "v1",
                1,
                args.v1_code,
                argparse.Namespace(router_arg=[]),
                out_plan(case, "v1", case.workdir, state=state),
            )
            res.notes.append(
                "v1 reads a plain (non-transactional) copy of the fold's consent.state: faust's "
                "table recovery waits for the offset below each partition's high watermark, "
                "which after the fold's transactions is a commit marker it never receives (v1 "
                "on the fold's topic hangs in recovery)."
            )
            res.runs["v1"] = measure(
                kafka, f"router v1 (faust), first {m:,} events", procs, plan.decisions_topic, p, m
            )


def live(args: argparse.Namespace, case: rb.Case, res: Results, phases: set[str]) -> None:
    plan = res.v2_plan
    v2 = res.runs.get("v2")
    if plan is None or v2 is None:
        res.notes.append("latency/withdraw skipped: they need the v2 phase")
        return
    policy = case.workdir / "policy-v2.yaml"
    procs, _ = routers(case.kafka, case, "v2", 1, args.v2_code, args, (plan, policy), "v2-live")
    router = procs[0]
    try:
        router.wait_ready(timeout=300)
        time.sleep(3.0)  # catch up with the (consumed) backlog's tail
        k = min(args.withdrawals, len(case.subjects) // 2)
        if "latency" in phases:
            for rate in [v2.eps / 2, *(args.latency_rate or [])]:
                say(f"[latency] live events at {rate:,.0f}/s for {args.latency_seconds:.0f} s")
                cpu0, t0, busy0 = router.cpu(), time.monotonic(), rb.machine_busy()
                peaks = Peaks(router)
                peaks.start()
                rows = live_latency(case, plan, rate, args.latency_seconds, case.subjects[k:])
                peaks.stop()
                for row in rows:
                    res.add(*row)
                res.add(
                    "  router during it",
                    f"{(router.cpu() - cpu0) / (time.monotonic() - t0):.0%} of a core (all cores "
                    f"{rb.busy_share(busy0, rb.machine_busy()):.0%} busy); at most "
                    f"{peaks.waiting:,.0f} events waiting at the gate, input lag at most "
                    f"{peaks.lag:,.0f} records (/metrics, sampled every 0.5 s)",
                )
        if "withdraw" in phases:
            say(f"[withdraw] {k} withdrawals")
            for row in withdraw_phase(case, plan, k, window=1.0):
                res.add(*row)
        res.add("v2 live router: log lines with ERROR / Traceback", str(router.log_problems()))
    finally:
        router.stop()


def ratio_rows(res: Results) -> None:
    r = res.runs
    pairs = [("v2", "pipe-txn"), ("v2", "pipe-plain"), ("v2", "v1"), ("v2x2", "v2")]
    for a, b in pairs:
        if a in r and b in r:
            res.add(
                f"ratio {a} / {b}",
                f"events/s {r[a].eps / r[b].eps:.3f}; CPU µs/event {r[a].cpu_us / r[b].cpu_us:.2f}",
            )


def render(
    args: argparse.Namespace, bootstrap: str, res: Results, started: datetime, load0: str
) -> str:
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    head = [
        "# Router v2 benchmark (bench/router_v2_bench.py)",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC (the run took {minutes:.1f} min)",
        f"- machine: nproc {os.cpu_count()}, {rb.cpu_model()}, {rb.mem_total_gib():.1f} GiB RAM; "
        f"load average before {load0}, after {rb.loadavg()}",
        f"- Python {platform.python_version()}; {rb.KAFKA} ({bootstrap})",
        f"- router v2 code: {code_of(args.v2_code)}",
        f"- router v1 code: {code_of(args.v1_code) if args.v1_code else '-'}",
        f"- harness: {rb.code_version()}",
        f"- command: `bench/router_v2_bench.py {rb.shown_args()}`",
        f"- case: {args.subjects:,} subjects (1 analytics + 1-4 of {rb.PARTNERS} partner grants, "
        f"write path + fold), {args.events:,} browsing events as a backlog, {args.partitions} "
        "partitions; policy 1 analytics + 38 partner browsing sinks",
        "",
        "| run | procs | events | events/s (first→last decision) | events/s (after 1st "
        "commit) | events/s (from process start) | first decision after s | CPU s | CPU "
        "µs/event (whole process) | CPU µs/event (first→last) | peak RSS MiB | load 1m | all "
        "cores busy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in res.runs.values():
        head.append(
            f"| {run.label} | {run.procs} | {run.events:,} | {run.eps:,.0f} | "
            f"{run.eps_after_first:,.0f} | {run.eps_from_start:,.0f} | {run.first_after_s:.1f} | "
            f"{run.cpu_s:.1f} | {run.cpu_us:,.0f} | {run.cpu_window_us:,.0f} | "
            f"{run.rss_mib:.0f} | {run.load} | {run.busy:.0%} |"
        )
    head += ["", "| what | result |", "|---|---|", *(f"| {a} | {b} |" for a, b in res.rows), ""]
    return "\n".join(head + [f"{n}\n" for n in res.notes]).rstrip() + "\n"


def run_case(
    args: argparse.Namespace, kafka: rb.Kafka, workdir: Path, res: Results, phases: set[str]
) -> None:
    """The case (consent through the write path and the fold, the backlog), then its phases."""
    subjects = min(args.subjects, args.events)
    case = rb.make_case(kafka, workdir, args.partitions, subjects, args.events)
    try:
        throughput(args, case, res, phases)
        ratio_rows(res)
        if phases & {"latency", "withdraw"}:
            live(args, case, res, phases)
        if case.fold is not None:
            problems = case.fold.log_problems()
            res.add("consent fold: log lines with ERROR / Traceback", str(problems))
    finally:
        case.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.bootstrap:
        os.environ["CONSENTGATE_BOOTSTRAP"] = args.bootstrap
    phases = set(args.only or PHASES)
    started = datetime.now(UTC)
    load0 = rb.loadavg()
    tag = f"bench2-{started:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:4]}"
    workdir = Path(tempfile.mkdtemp(prefix="router-v2-bench-"))
    res = Results()
    failed = False
    if args.v2_commit and not args.v2_code:
        args.v2_code = snapshot(args.v2_commit, workdir)
    if not args.v1_code and args.v1_commit and "v1" in phases:
        args.v1_code = snapshot(args.v1_commit, workdir)
    with open_cluster() as cluster:
        say(f"cluster {cluster.bootstrap}; tag {tag}; files in {workdir}")
        kafka = rb.Kafka(cluster.bootstrap, tag)
        try:
            if phases - {"startup"}:
                run_case(args, kafka, workdir, res, phases)
            if "startup" in phases:
                for size in args.startup_subjects:
                    say(f"[startup] {size:,} subjects")
                    for row in startup_phase(kafka, workdir, size, args.partitions, args.v2_code):
                        res.add(*row)
        except Exception as exc:  # noqa: BLE001 - keep what was measured
            failed = True
            res.add("FAILED", f"{type(exc).__name__}: {exc}")
            import traceback  # noqa: PLC0415

            traceback.print_exc()
        finally:
            rb._stop_children()
            say("[cleanup]")
            kafka.cleanup()
    res.notes.append(
        "How: each throughput run starts its process(es) on fresh output topics and a fresh "
        "group over the same backlog; a read_committed consumer counts the decisions topic; "
        "events/s = N / (first decision visible → N-th visible), as in shared/peers/SPEC.md. "
        "The router also reads the case's consent.changes (≈3.5 per subject) as part of its "
        "work; the pipe does not. The pipe writes the v2 run's measured records per event "
        "(decisions + sink records + provisions, counted read_committed) with its mean value "
        "sizes, but does no decoding, deciding or encoding. Withdrawals go through the consent "
        "service's write path (appended to consent.changes; t0 = the change's recorded time, "
        "= its effective time) and the consent fold (a separate process) writes consent.state; "
        "the 'in consent.state' rows are t0 → the fold's record (CreateTime, and visible to a "
        "read_committed consumer). Withdrawal → enforced: probes are stamped with their produce "
        "time every 20 ms (quantized by it); the router's gate waits for consent.state, not "
        "consent.changes, so probes stamped after t0 pass until the router has read the "
        "withdrawal from consent.changes (subject held as unsettled: consent_state_stale) or "
        "the fold's state record; the retraction rows show when the router's view applied it "
        "(the retraction is produced in the loop iteration that sees the state record)."
    )
    if args.note:
        res.notes.append(args.note)
    text = render(args, cluster.bootstrap, res, started, load0)
    out = workdir / "router-v2.md" if args.quick else RESULTS
    out.write_text(text, encoding="utf-8")
    say("\n" + text)
    say(f"written to {out}; logs in {workdir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
