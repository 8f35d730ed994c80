"""Soak benchmark: one router for many minutes at a steady rate; does its memory stay flat?

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 400] [--partitions 3]
        [--subjects 2000] [--sample 5] [--bootstrap HOST:PORT] [--out DIR]

Cluster: ``--bootstrap``, else ``CONSENTGATE_BOOTSTRAP``, else ``open_cluster()`` (a broker it
starts is stopped at the end). Setup as router_bench's ``make_case``, without its backlog:
topics suffixed ``.soak-<time>-<hex>``, a policy for 5 partners, a consent fold process, and
consent for S subjects through the consent service's write path, folded into consent.state.
Then one ``consentgate router`` and a thread producing browsing events at R/s (event time =
now) plus one consent change a second through the write path (analytics withdrawn, granted
back ~40 s later), so that retractions happen. Every ``--sample`` seconds: the router's RSS
(VmRSS), its CPU share, its group's lag on the raw topic (end minus committed offsets), its
aborted transactions (``/metrics``), and event → analytics sink latency p50/p99 over the sink
records a read_committed consumer saw in the interval (sink CreateTime minus event_time).
Writes ``<out>/soak.md`` and ``<out>/soak.html`` (inline SVG charts). Verdict "RSS flat after
warm-up": the least-squares slope after the first 20 % is below 1 MiB/min. It reports, it does
not assert: exit 0 when the run completed, 1 when it broke off, 2 when setup failed. Topics,
groups and processes are removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Message, Producer

sys.path.insert(0, str(Path(__file__).resolve().parent))

import router_bench as rb
import soak_plot
from consentgate.consent.changelog import ChangeLog
from consentgate.consent.requests import ChangeRequest
from consentgate.consent.service import ConsentService
from consentgate.models.consent import ConsentAction
from consentgate.policy import load_policy
from consentgate.serde import Serde
from consentgate_dev.cluster import open_cluster
from consentgate_dev.demo.case import CaseSpec, write_consent
from consentgate_dev.demo.policygen import PolicyPlan, partner_ids, policy_yaml
from machine import cpu_model, loadavg, mem_total_gib, proc_cpu_seconds, proc_status_mib

PARTNERS = 5
WARMUP = 0.2  # the first 20 % of the run
FLAT_MIB_PER_MIN = 0.1  # RSS counts as flat after warm-up below this slope (~140 MiB a day)
HOLD = 40  # a withdrawn subject is granted back after about this many changes (= seconds)
ABORTS = "consentgate_transactions_aborted_total"
RETRACTIONS = "consentgate_retractions_total"
say = rb.say


class SetupError(RuntimeError):
    """The soak could not start: no broker, no topics, a fold or router that never got ready."""


# -- setup ----------------------------------------------------------------------------------


def setup(kafka: rb.Kafka, workdir: Path, partitions: int, subjects: int) -> rb.Case:
    """``make_case`` without its backlog: topics, policy, a consent fold, and consent for
    ``subjects`` through the write path, folded into consent.state."""
    partners = partner_ids(PARTNERS)
    plan = PolicyPlan(partners, partners[:1], suffix=f".{kafka.tag}")
    every = [*plan.core_topics(), *plan.sink_topics()]
    say(f"[setup] {len(every)} topics x {partitions} partitions, {PARTNERS} partners")
    kafka.create(every, partitions, compact=(plan.state_topic,))
    policy = workdir / "policy.yaml"
    policy.write_text(policy_yaml(plan))
    serde = Serde.from_settings(kafka.settings)
    service = ConsentService(load_policy(policy), ChangeLog(kafka.conf, plan.changes_topic, serde))
    case = rb.Case(kafka, rb.TopicSet(plan, partitions), policy, workdir, service, serde)
    try:
        case.fold = rb.FoldProc(kafka, plan, policy, workdir)
        say(f"[setup] consent fold ready in {case.fold.wait_ready():.1f} s")
        spec = CaseSpec(
            students=subjects,
            partners=plan.partners,
            never_shared=0,
            score_share=0.0,
            analytics_share=1.0,
            profiling_share=0.0,
        )
        write_consent(spec, service, random.Random(spec.seed), progress=lambda m: say(f"    {m}"))
        say(f"[setup] consent fold caught up {case.fold.wait_folded(partitions):.1f} s later")
        time.sleep(max(0.0, service.clock.now().timestamp() - time.time()))  # events after it
    except BaseException:
        case.close()
        raise
    case.subjects = [f"student-{i:05d}" for i in range(subjects)]
    return case


# -- load: events at a steady rate, consent changes once a second ---------------------------


class Load(threading.Thread):
    """Browsing events at ``rate``/s (event time = now) and one consent change a second."""

    def __init__(self, case: rb.Case, rate: float) -> None:
        super().__init__(daemon=True, name="soak-load")
        self.case, self.rate = case, rate
        self.rng = random.Random(5)
        self.produced = self.failed = self.withdrawals = self.grants = 0
        self.withdrawn: list[str] = []  # oldest first
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            self._loop(rb.warm_producer(self.case))
        except Exception as exc:  # noqa: BLE001 - the sampler reports it
            self.error = exc

    def _loop(self, producer: Producer) -> None:
        start = time.monotonic()
        next_change = start + 1.0
        while not self._halt.is_set():
            now = time.monotonic()
            while self.produced < int((now - start) * self.rate):
                self._event(producer)
            producer.poll(0)
            if now >= next_change:
                self._change()
                next_change += 1.0
            time.sleep(0.005)
        producer.flush(30)

    def _event(self, producer: Producer) -> None:
        subject = self.rng.choice(self.case.subjects)
        company = self.rng.choice(self.case.topics.plan.partners)
        _, value = rb.browsing_event(self.case.serde, subject, datetime.now(UTC), company)
        producer.produce(self.case.raw, key=subject.encode(), value=value, on_delivery=self._acked)
        self.produced += 1

    def _acked(self, err: Any, _msg: Message) -> None:
        if err is not None:
            self.failed += 1

    def _change(self) -> None:
        """Withdraw analytics for a new subject, or grant it back to the longest withdrawn."""
        if len(self.withdrawn) < HOLD:
            subject = self.rng.choice(self.case.subjects)
            if subject in self.withdrawn:
                return
            action, self.withdrawals = ConsentAction.WITHDRAW, self.withdrawals + 1
            self.withdrawn.append(subject)
        else:
            subject = self.withdrawn.pop(0)
            action, self.grants = ConsentAction.GRANT, self.grants + 1
        request = ChangeRequest(
            subject_id=subject,
            action=action,
            purpose="analytics",
            notice_version="2019-03" if action is ConsentAction.GRANT else None,
        )
        self.case.service.record([self.case.service.change(request, actor="soak")])

    def stop(self) -> None:
        self._halt.set()
        self.join(60)


# -- sampling -------------------------------------------------------------------------------


class Drain(rb.Collector):
    """router_bench's Collector (read_committed: librdkafka's default) that hands over and
    forgets what it found since the last call."""

    def drain(self) -> dict[str, Any]:
        with self._lock:
            found, self.found = self.found, {}
        return found


def sink_latency_of(serde: Serde, msg: Message) -> tuple[str, Any] | None:
    """event id -> sink record CreateTime minus the event's event_time, seconds."""
    value = serde.decode(msg.value()).value
    when = value["event_time"]
    ms = when.timestamp() * 1000 if isinstance(when, datetime) else float(when)
    return str(value["evidence"]["event_id"]), (msg.timestamp()[1] - ms) / 1000


def record_seen(_serde: Serde, msg: Message) -> tuple[str, Any] | None:
    return f"{msg.partition()}:{msg.offset()}", None


@dataclass
class Sample:
    t: float  # s since the load started
    rss: float  # MiB
    cpu: float  # share of one core over the interval
    lag: int  # raw records not yet committed by the router's group
    aborts: float  # since the load started
    produced: int
    decisions: int  # in the interval
    sunk: int  # analytics sink records in the interval
    p50: float  # ms
    p99: float

    def line(self) -> str:
        return (
            f"  {self.t:6.0f} s  RSS {self.rss:6.1f} MiB  CPU {self.cpu:4.0%}  lag {self.lag:6,}"
            f"  aborts {self.aborts:3.0f}  events {self.produced:8,}  decisions {self.decisions:5,}"
            f"  sink p50 {self.p50:6.0f} ms  p99 {self.p99:6.0f} ms"
        )


@dataclass
class Run:
    args: argparse.Namespace
    started: datetime
    load_at_start: str = field(default_factory=loadavg)
    cluster: str = ""
    samples: list[Sample] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # ms, every sink record
    decisions: int = 0
    produced: int = 0
    failed: int = 0
    changes: str = ""
    retractions: float = 0.0
    log_problems: int = 0
    broke: str = ""  # why the run ended early


def raw_lag(case: rb.Case, group: str) -> int:
    offsets = case.kafka.group_offsets(group, case.raw, case.topics.partitions)
    return sum(end - max(committed, 0) for _, committed, end in offsets)


def measure(case: rb.Case, router: rb.RouterProc, run: Run) -> None:
    """Load for the whole run, a sample every ``--sample`` seconds."""
    kafka, plan, parts = case.kafka, case.topics.plan, case.topics.partitions
    sinks = Drain(kafka, plan.analytics_topic, parts, sink_latency_of)
    decisions = Drain(kafka, plan.decisions_topic, parts, record_seen)
    load = Load(case, run.args.rate)
    m0 = router.metrics()
    for thread in (sinks, decisions, load):
        thread.start()
    t0 = last = time.monotonic()
    cpu_last = proc_cpu_seconds(router.pid)
    count = math.ceil(run.args.minutes * 60 / run.args.sample)
    try:
        for k in range(1, count + 1):
            time.sleep(max(0.0, t0 + k * run.args.sample - time.monotonic()))
            if not router.running():
                run.broke = f"router exited {router.proc.returncode}; see {router.log}"
                return
            if load.error is not None:
                run.broke = f"the load thread failed: {load.error!r}"
                return
            now, cpu = time.monotonic(), proc_cpu_seconds(router.pid)
            lat = [v * 1000 for v in sinks.drain().values()]
            run.latencies += lat
            seen = len(decisions.drain())
            run.decisions += seen
            sample = Sample(
                now - t0,
                proc_status_mib(router.pid, "VmRSS"),
                (cpu - cpu_last) / (now - last),
                raw_lag(case, router.app_id),
                router.metrics().get(ABORTS, math.nan) - m0.get(ABORTS, 0.0),
                load.produced,
                seen,
                len(lat),
                rb.pct(lat, 0.5) if lat else math.nan,
                rb.pct(lat, 0.99) if lat else math.nan,
            )
            run.samples.append(sample)
            say(sample.line())
            last, cpu_last = now, cpu
    finally:
        load.stop()
        run.retractions = router.metrics().get(RETRACTIONS, 0.0) - m0.get(RETRACTIONS, 0.0)
        sinks.stop()
        decisions.stop()
        run.produced, run.failed = load.produced, load.failed
        run.changes = f"{load.withdrawals:,} withdrawals, {load.grants:,} grants back"


def soak(run: Run, kafka: rb.Kafka, workdir: Path) -> None:
    args = run.args
    try:
        case = setup(kafka, workdir, args.partitions, args.subjects)
    except Exception as exc:
        why = str(exc) or f"no answer from {kafka.bootstrap}"
        raise SetupError(f"{type(exc).__name__}: {why}") from exc
    try:
        router = rb.RouterProc(kafka, case.topics, case.policy, workdir)
        try:
            try:
                t_ready, _ = router.wait_ready(timeout=300)
            except Exception as exc:
                raise SetupError(f"router not ready: {exc}") from exc
            say(f"[router] ready in {t_ready - router.started:.1f} s; log {router.log}")
            say(f"[soak] {args.minutes:g} min at {args.rate:g} events/s")
            measure(case, router, run)
            run.log_problems = router.log_problems()
        finally:
            router.stop()
    finally:
        case.close()


# -- results --------------------------------------------------------------------------------


def rss_trend(run: Run) -> tuple[list[Sample], float, float]:
    """The samples after warm-up and their least-squares line: (samples, MiB/min, MiB at 0)."""
    s = run.samples
    warm_t = WARMUP * (s[-1].t if run.broke else run.args.minutes * 60)
    after = [x for x in s if x.t >= warm_t] or s[-1:]
    mx = sum(x.t for x in after) / len(after) / 60
    my = sum(x.rss for x in after) / len(after)
    sxx = sum((x.t / 60 - mx) ** 2 for x in after)
    slope = sum((x.t / 60 - mx) * (x.rss - my) for x in after) / sxx if sxx else math.nan
    return after, slope, my - slope * mx


def summary(run: Run) -> tuple[list[tuple[str, str]], str]:
    """The summary rows and the verdict line."""
    s, lat = run.samples, run.latencies
    after, slope, _ = rss_trend(run)
    flat = "yes" if slope < FLAT_MIB_PER_MIN else "no"
    verdict = (
        f"RSS flat after warm-up: {flat} (slope {slope:+.2f} MiB/min over the "
        f"{len(after)} samples after warm-up; threshold: < {FLAT_MIB_PER_MIN:g} MiB/min)"
    )
    rows = [
        ("events produced", f"{run.produced:,} ({run.failed:,} not acknowledged)"),
        ("decisions seen (read_committed)", f"{run.decisions:,}"),
        ("consent changes", f"{run.changes}; {run.retractions:,.0f} retractions written"),
        (f"RSS at warm-up end ({after[0].t:.0f} s)", f"{after[0].rss:.1f} MiB"),
        (f"RSS at the end ({s[-1].t:.0f} s)", f"{s[-1].rss:.1f} MiB"),
        ("RSS slope after warm-up (least squares)", f"{slope:+.3f} MiB/min"),
        ("router CPU (mean of the samples)", f"{sum(x.cpu for x in s) / len(s):.0%} of a core"),
        ("max lag (raw topic, router's group)", f"{max(x.lag for x in s):,} records"),
        ("event → analytics sink, overall", rb.ms_summary([v / 1000 for v in lat])),
        ("transaction aborts", f"{s[-1].aborts:,.0f}"),
        ("router log lines with ERROR / Traceback", f"{run.log_problems}"),
    ]
    if run.broke:
        rows.append(("RUN BROKE OFF", run.broke))
    return rows, verdict


def facts(run: Run) -> list[str]:
    a = run.args
    return [
        f"date: {run.started:%Y-%m-%d %H:%M} UTC",
        f"machine: nproc {os.cpu_count()}, {cpu_model()}, {mem_total_gib():.1f} GiB RAM; "
        f"load average at start {run.load_at_start}, at end {loadavg()}",
        f"Python {platform.python_version()}; {rb.KAFKA} ({run.cluster})",
        rb.code_version(),
        f"command: {' '.join(['bench/soak.py', *sys.argv[1:]])}",
        f"parameters: {a.minutes:g} min, {a.rate:g} events/s, {a.partitions} partitions, "
        f"{a.subjects:,} subjects, {PARTNERS} partners, a sample every {a.sample:g} s, "
        f"warm-up the first {WARMUP:.0%}",
        "how: lag = end offset minus the router group's committed offset on the raw topic, "
        "summed over partitions; latency = analytics sink record CreateTime minus the event's "
        "event_time, over the sink records a read_committed consumer saw in the interval; "
        "CPU = the router's utime+stime over the interval; decisions = decision records seen",
    ]


def render_md(run: Run) -> str:
    rows, verdict = summary(run)
    head = "| t s | RSS MiB | CPU | lag | aborts | events | decisions | sink n | p50 ms | p99 ms |"
    lines = [
        "# Soak benchmark (bench/soak.py)",
        "",
        *(f"- {f}" for f in facts(run)),
        "",
        f"**{verdict}**",
        "",
        "| what | result |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
        "## Samples",
        "",
        head,
        "|---" * 10 + "|",
        *(
            f"| {x.t:.0f} | {x.rss:.1f} | {x.cpu:.0%} | {x.lag:,} | {x.aborts:.0f} | "
            f"{x.produced:,} | {x.decisions:,} | {x.sunk:,} | {x.p50:.0f} | {x.p99:.0f} |"
            for x in run.samples
        ),
    ]
    return "\n".join(lines) + "\n"


def render_html(run: Run) -> str:
    rows, verdict = summary(run)
    s, mins = run.samples, [x.t / 60 for x in run.samples]
    after, slope, at0 = rss_trend(run)
    warm = after[0].t / 60
    fit = [at0 + slope * m if m >= warm else math.nan for m in mins]

    def chart(title: str, unit: str, lines: dict[str, list[float]], **options: Any) -> str:
        series = [soak_plot.Series(name, mins, ys) for name, ys in lines.items()]
        return soak_plot.line_chart(title, unit, series, **options)

    charts = [
        chart(
            "Router RSS",
            "MiB",
            {"VmRSS": [x.rss for x in s], "fit": fit},
            from_zero=False,
            mark=warm,
        ),
        chart("Consumer lag, raw topic", "records", {"lag": [float(x.lag) for x in s]}),
        chart(
            "Event → analytics sink latency",
            "ms",
            {"p50": [x.p50 for x in s], "p99": [x.p99 for x in s]},
        ),
        chart("Transaction aborts, cumulative", "count", {"aborts": [x.aborts for x in s]}),
    ]
    return soak_plot.page("Soak benchmark (bench/soak.py)", verdict, facts(run), rows, charts)


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=400.0, help="browsing events/s")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument(
        "--bootstrap", help="HOST:PORT (default: CONSENTGATE_BOOTSTRAP, else open_cluster())"
    )
    parser.add_argument("--out", type=Path, default=rb.REPO / "bench" / "results")
    args = parser.parse_args(argv)
    if min(args.minutes, args.rate, args.partitions, args.subjects, args.sample) <= 0:
        parser.error("--minutes, --rate, --partitions, --subjects and --sample must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that finally blocks run
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in background
    if args.bootstrap:
        os.environ["CONSENTGATE_BOOTSTRAP"] = args.bootstrap
    args.out = args.out.resolve()
    run = Run(args, datetime.now(UTC))
    tag = f"soak-{run.started:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:4]}"
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    os.chdir(workdir)  # the consent fold (faust) writes its data folder into the cwd
    try:
        cluster = open_cluster()
    except Exception as exc:  # noqa: BLE001 - say why and stop
        say(f"soak: setup failed: no broker: {type(exc).__name__}: {exc}")
        return 2
    with cluster:
        run.cluster = f"{cluster.kind}, {cluster.bootstrap}"
        say(f"cluster: {run.cluster}; tag {tag}; logs in {workdir}")
        kafka = rb.Kafka(cluster.bootstrap, tag)
        try:
            soak(run, kafka, workdir)
        except SetupError as exc:
            say(f"soak: setup failed: {exc}")
            return 2
        except KeyboardInterrupt:
            run.broke = "interrupted (Ctrl-C)"
        finally:
            say("[cleanup]")
            kafka.cleanup()
    if not run.samples:
        say(f"soak: no samples taken ({run.broke or 'nothing measured'})")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.md").write_text(render_md(run), encoding="utf-8")
    (args.out / "soak.html").write_text(render_html(run), encoding="utf-8")
    rows, verdict = summary(run)
    say("")
    for k, v in rows:
        say(f"  {k}: {v}")
    say(f"  {verdict}")
    say(f"written to {args.out / 'soak.md'} and {args.out / 'soak.html'}")
    return 1 if run.broke else 0


if __name__ == "__main__":
    sys.exit(main())
