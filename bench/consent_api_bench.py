"""Consent HTTP API benchmark on a real broker: changes/s, fold catch-up, write → enforced.

    .venv/bin/python bench/consent_api_bench.py [--requests 20000] [--concurrency 1 8 32]
        [--withdrawals 50] [--subjects 2000] [--events 4000] [--quick] [--bootstrap HOST:PORT]

One run on one case (bench/router_bench.py's ``make_case``: fresh topics suffixed with the
run's tag, a ``consentgate consent fold`` process, S subjects with 1 analytics + 1-4 of 38
partner grants through the consent service's write path, folded, then N browsing events).
Then ``consentgate consent serve --no-fold`` (without ``--no-fold`` while serve does not know
it: it then runs only the API) on the case's consent topics, and in this order:

1. baseline: the in-process write path, ``ConsentService.change`` + ``ConsentService.record``
   in batches of ``--batch`` (as make_case appends), M grants of analytics for fresh subjects;
   also one change per ``record`` call, one after another (what one API request does);
2. the API: for each C of ``--concurrency``, M ``POST /v1/subjects/{id}/grants`` (analytics,
   a fresh subject each) from C threads of this process, each with its own keep-alive
   ``httpx.Client``; accepted (202) changes/s from the threads' common start to the last
   answer, per-request latency, statuses, CPU of the server and of this process, and the
   server's own append time (``consentgate_api_append_seconds``). After each batch of writes
   the fold's group must commit past the end of consent.changes (consent.state then holds
   them): fold changes/s = M / (first write → fold committed);
3. write → visible / enforced: a router (``consentgate router``, router_bench's RouterProc) on
   the case's topics; K withdrawals of analytics through ``POST .../withdrawals``, one at a
   time, with router_bench.withdrawals' probes (an event every 20 ms for the subject), its
   StateWatch (consent.state read_committed) and enforcement(); t0 = this process's clock
   just before the POST is sent. Also t0 → 202 and t0 → the service's ``recorded_time``.

The client threads share the machine (and the GIL of this process) with the server, the
fold, the router and the broker; CPU shares are given so that the figures can be read.
Writes bench/results/consent-api-<UTC stamp>.md (``--quick``: a smoke run, only printed).
Topics and consumer groups of the run are deleted afterwards (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import router_bench as rb
from consentgate.consent.requests import ChangeRequest
from consentgate.models.consent import ConsentAction
from consentgate_dev.cluster import open_cluster

REPO = rb.REPO
RESULTS_DIR = REPO / "bench" / "results"
TOKEN = "bench-only-api-token-0123456789abcdef"  # noqa: S105 - a throwaway local token
TARGET_S = 0.2  # the target: API write → enforced p99 < 200 ms
APPEND_SUM = "consentgate_api_append_seconds_sum"
APPEND_COUNT = "consentgate_api_append_seconds_count"
say = rb.say


# -- the API process ------------------------------------------------------------------------


def serve_knows_no_fold() -> bool:
    """Whether ``consentgate consent serve`` accepts ``--no-fold`` (it is being added)."""
    cmd = [sys.executable, "-m", "consentgate", "consent", "serve", "--help"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    return "--no-fold" in out.stdout


class ApiProc(rb.ServiceProcess):
    """``consentgate consent serve`` on the case's consent topics, logging to the workdir."""

    name = "consent API"

    def __init__(self, case: rb.Case, *, no_fold: bool) -> None:
        plan = case.topics.plan
        port = rb.free_port()
        args = [
            *("consent", "serve"),
            *(["--no-fold"] if no_fold else []),
            *("--port", str(port), "--policy", str(case.policy)),
            *("--changes-topic", plan.changes_topic, "--state-topic", plan.state_topic),
        ]
        env = {"CONSENTGATE_BOOTSTRAP": case.kafka.bootstrap, "CONSENTGATE_API_TOKEN": TOKEN}
        self.command = " ".join(["-m", "consentgate", *args])
        super().__init__(
            args,
            env,
            case.workdir / f"consent-api-{port}.log",
            port,
            append=False,
            unset=("CONSENTGATE_API_OPERATOR_TOKEN",),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(  # type: ignore[override]
        self, timeout: float = 60.0, every: float = 0.1
    ) -> float:
        """Until ``/readyz`` answers 200; the seconds since the process started."""
        super().wait_ready(timeout, every)
        return time.monotonic() - self.started

    def cpu(self) -> float:
        return rb.proc_cpu_seconds(self.proc.pid)

    def append_seconds(self) -> tuple[float, float]:
        """(sum, count) of the server's append histogram."""
        m = self.metrics()
        return m.get(APPEND_SUM, 0.0), m.get(APPEND_COUNT, 0.0)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60.0
        )

    def log_problems(self) -> int:
        text = self.log.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if "ERROR" in line or "Traceback" in line)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        return super().stop(sig, timeout)


# -- measurements ---------------------------------------------------------------------------


@dataclass
class Load:
    """One batch of writes: how many were accepted, how long it took, what it cost."""

    label: str
    seconds: float
    accepted: int
    latencies: list[float] = field(default_factory=list)  # s per request (or per record call)
    statuses: Counter[str] = field(default_factory=Counter)
    server_cpu: float = float("nan")
    client_cpu: float = 0.0
    busy: float = float("nan")
    append: tuple[float, float] = (0.0, 0.0)  # the server's append histogram (sum, count)
    last_recorded: float = 0.0  # the latest recorded_time answered (wall clock s)
    fold_seconds: float = float("nan")  # first write → the fold committed every change

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds

    def describe(self) -> str:
        text = f"{self.rate:,.0f} changes/s ({self.accepted:,} in {self.seconds:.1f} s"
        if self.latencies:
            text += (
                f"; latency p50 {pct_ms(self.latencies, 0.5)}, p99 {pct_ms(self.latencies, 0.99)}"
            )
        bad = {k: v for k, v in self.statuses.items() if k != "202"}
        if self.statuses:
            text += "; non-2xx: " + (", ".join(f"{k} x{v}" for k, v in bad.items()) or "none")
        if self.server_cpu == self.server_cpu:  # not NaN: the API process was measured
            text += f"; server {self.server_cpu / self.seconds:.0%} of a core"
        text += f"; this process {self.client_cpu / self.seconds:.0%} of a core"
        if self.append[1]:
            text += f"; server's append mean {self.append[0] / self.append[1] * 1000:.1f} ms"
        return text + f"; all cores {self.busy:.0%} busy)"


def pct_ms(values: list[float], q: float) -> str:
    return f"{rb.pct(values, q) * 1000:.1f} ms"


def grant_request(subject: str) -> ChangeRequest:
    return ChangeRequest(
        subject_id=subject, action=ConsentAction.GRANT, purpose="analytics", method="API"
    )


def baseline_batched(case: rb.Case, subjects: list[str], batch: int) -> Load:
    """ConsentService.change + record in batches of ``batch``, in this process."""
    service = case.service
    cpu0, busy0, started = time.process_time(), rb.machine_busy(), time.monotonic()
    for i in range(0, len(subjects), batch):
        changes = [service.change(grant_request(s), actor="bench") for s in subjects[i : i + batch]]
        service.record(changes)
    seconds = time.monotonic() - started
    return Load(
        f"in-process write path, record() in batches of {batch:,}",
        seconds,
        len(subjects),
        client_cpu=time.process_time() - cpu0,
        busy=rb.busy_share(busy0, rb.machine_busy()),
    )


def baseline_single(case: rb.Case, subjects: list[str]) -> Load:
    """One change per record() call, one after another (what one API request appends)."""
    service = case.service
    latencies: list[float] = []
    cpu0, busy0, started = time.process_time(), rb.machine_busy(), time.monotonic()
    for s in subjects:
        t = time.perf_counter()
        service.record([service.change(grant_request(s), actor="bench")])
        latencies.append(time.perf_counter() - t)
    seconds = time.monotonic() - started
    return Load(
        "in-process write path, one change per record(), sequential",
        seconds,
        len(subjects),
        latencies,
        client_cpu=time.process_time() - cpu0,
        busy=rb.busy_share(busy0, rb.machine_busy()),
    )


@dataclass
class Worker:
    """What one client thread saw."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    last_recorded: float = 0.0


def post_grants(api: ApiProc, subjects: list[str], start: threading.Barrier, out: Worker) -> None:
    """One client thread: a warm keep-alive connection, then one POST per subject."""
    with api.client() as client:
        client.get("/healthz")  # connect before the clock starts
        start.wait()
        for subject in subjects:
            t = time.perf_counter()
            try:
                r = client.post(f"/v1/subjects/{subject}/grants", json={"purpose": "analytics"})
            except httpx.HTTPError as exc:
                out.statuses[type(exc).__name__] += 1
                continue
            out.latencies.append(time.perf_counter() - t)
            out.statuses[str(r.status_code)] += 1
            if r.status_code == 202:
                recorded = r.json()["changes"][0]["recorded_time"]
                out.last_recorded = max(out.last_recorded, parse_time(recorded))


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def api_load(api: ApiProc, subjects: list[str], concurrency: int) -> Load:
    """``len(subjects)`` grants from ``concurrency`` threads; the clock runs from the
    threads' common start (all connected) to the last answer."""
    workers = [Worker() for _ in range(concurrency)]
    start = threading.Barrier(concurrency + 1)
    threads = [
        threading.Thread(
            target=post_grants, args=(api, subjects[i::concurrency], start, w), daemon=True
        )
        for i, w in enumerate(workers)
    ]
    for t in threads:
        t.start()
    start.wait()
    a0, cpu0, ccpu0, busy0 = api.append_seconds(), api.cpu(), time.process_time(), rb.machine_busy()
    started = time.monotonic()
    for t in threads:
        while t.is_alive():
            t.join(5.0)
            if t.is_alive():
                done = sum(len(w.latencies) for w in workers)
                rate = done / (time.monotonic() - started)
                say(f"      {done:,}/{len(subjects):,} answered ({rate:,.0f}/s)")
    seconds = time.monotonic() - started
    a1 = api.append_seconds()
    statuses: Counter[str] = sum((w.statuses for w in workers), Counter())
    return Load(
        f"API, C={concurrency}",
        seconds,
        statuses.get("202", 0),
        [x for w in workers for x in w.latencies],
        statuses,
        server_cpu=api.cpu() - cpu0,
        client_cpu=time.process_time() - ccpu0,
        busy=rb.busy_share(busy0, rb.machine_busy()),
        append=(a1[0] - a0[0], a1[1] - a0[1]),
        last_recorded=max(w.last_recorded for w in workers),
    )


def folded(case: rb.Case, load: Load, began: float) -> None:
    """Wait until the fold has committed every change written so far; sets fold_seconds
    (from ``began``, the batch's first write, monotonic)."""
    assert case.fold is not None
    case.fold.wait_folded(case.topics.partitions)
    load.fold_seconds = time.monotonic() - began


def fold_row(load: Load) -> str:
    rate = load.accepted / load.fold_seconds
    after = load.fold_seconds - load.seconds
    return (
        f"{rate:,.0f} changes/s ({load.accepted:,} changes: first write → committed by the fold "
        f"in {load.fold_seconds:.1f} s, {after:.1f} s after the last write was acknowledged)"
    )


# -- phases -----------------------------------------------------------------------------------


@dataclass
class Results:
    """The report's rows and notes, plus the measured loads by name."""

    report: rb.Report
    loads: dict[str, Load] = field(default_factory=dict)
    serve: str = ""  # how the API was started

    def add(self, what: str, result: str) -> None:
        self.report.add(what, result)


def run_baselines(case: rb.Case, args: argparse.Namespace, res: Results) -> None:
    subjects = [f"base-{i:06d}" for i in range(args.requests)]
    say(f"[baseline] {len(subjects):,} grants through ConsentService.record in batches")
    began = time.monotonic()
    batched = baseline_batched(case, subjects, args.batch)
    folded(case, batched, began)
    res.loads["batched"] = batched
    res.add(f"baseline: {batched.label}", batched.describe())
    res.add("  consent fold catch-up (baseline)", fold_row(batched))
    n = min(args.requests, args.single)
    say(f"[baseline] {n:,} grants, one change per record() call")
    single = baseline_single(case, [f"single-{i:06d}" for i in range(n)])
    res.loads["single"] = single
    res.add(f"baseline: {single.label}", single.describe())
    folded(case, single, time.monotonic())  # start the API levels with the fold caught up


def run_api_loads(case: rb.Case, api: ApiProc, args: argparse.Namespace, res: Results) -> float:
    """Every concurrency level in turn; returns the latest recorded_time the API answered."""
    latest = 0.0
    base, single = res.loads["batched"], res.loads["single"]
    for c in args.concurrency:
        subjects = [f"api-c{c}-{i:06d}" for i in range(args.requests)]
        say(f"[api] {len(subjects):,} POST .../grants from {c} client threads")
        began = time.monotonic()
        load = api_load(api, subjects, c)
        say(f"      {load.rate:,.0f} changes/s; waiting for the fold")
        folded(case, load, began)
        res.loads[f"C={c}"] = load
        latest = max(latest, load.last_recorded)
        res.add(f"API POST .../grants, C={c}", load.describe())
        ratio = load.rate / base.rate
        text = f"{ratio:.3f} (1 : {1 / ratio:,.1f})"
        if c == 1:
            text += f"; C=1 / one change per record(): {load.rate / single.rate:.2f}"
        res.add(f"  API C={c} / baseline (batched)", text)
        res.add(f"  consent fold catch-up (C={c})", fold_row(load))
    return latest


def api_withdrawal(client: httpx.Client, recorded: list[float]) -> rb.WriteWithdrawal:
    """router_bench.withdrawals' write hook: POST .../withdrawals; t0 just before sending."""

    def write(subject: str) -> tuple[str, float, float]:
        t0 = time.time()
        r = client.post(f"/v1/subjects/{subject}/withdrawals", json={"purpose": "analytics"})
        acked = time.time()
        if r.status_code != 202:
            raise RuntimeError(f"withdrawal of {subject}: {r.status_code} {r.text[:300]}")
        change = r.json()["changes"][0]
        recorded.append(parse_time(change["recorded_time"]) - t0)
        return str(change["change_id"]), t0, acked

    return write


def wait_for_clock(latest: float) -> None:
    """The service's clock is strictly increasing at ms precision: more than 1,000 changes/s
    runs it ahead of the wall clock; the withdrawals must not be timed in the future."""
    ahead = latest - time.time()
    if ahead > 0:
        say(f"      the API's clock is {ahead:.1f} s ahead of the wall clock: waiting")
        time.sleep(ahead + 0.05)


def run_withdrawals(
    case: rb.Case, api: ApiProc, args: argparse.Namespace, res: Results, latest: float
) -> None:
    """A router on the case's topics, then K withdrawals through the API with probes."""
    wait_for_clock(latest)
    say("[router] consentgate router on the case's topics")
    router = rb.RouterProc(case.kafka, case.topics, case.policy, case.workdir)
    plan, p = case.topics.plan, case.topics.partitions
    decisions = rb.Collector(case.kafka, plan.decisions_topic, p, rb.decision_of)
    try:
        t_ready, _ = router.wait_ready(timeout=600)
        records = case.kafka.count(plan.state_topic, p)
        res.add(
            "router start → ready",
            f"{t_ready - router.started:.1f} s (consent.state: {records:,} records, not compacted)",
        )
        decisions.start()
        k = min(args.withdrawals, len(case.subjects))
        say(f"[withdraw] {k} withdrawals through POST .../withdrawals")
        recorded: list[float] = []
        with api.client() as client:
            client.get("/healthz")  # a warm keep-alive connection
            rb.withdrawals(
                case,
                case.subjects[:k],
                decisions,
                args.window,
                res.report,
                write=api_withdrawal(client, recorded),
                via="the HTTP API (POST .../withdrawals; t0 = client clock before the POST)",
                target=TARGET_S,
            )
        res.add("  t0 → the service's recorded_time", rb.ms_summary(recorded))
        res.add("router log lines with ERROR / Traceback", str(router.log_problems()))
    finally:
        decisions.stop()
        router.stop()


def limits_note(res: Results) -> str | None:
    """What the measured CPU shares say about the API's throughput limit."""
    loads = [v for k, v in res.loads.items() if k.startswith("C=")]
    if not loads:
        return None
    top = max(loads, key=lambda x: x.rate)
    share = top.server_cpu / top.seconds
    per = 1e6 * top.server_cpu / max(top.accepted, 1)
    mine = top.client_cpu / top.seconds
    if share >= 0.85:
        verdict = (
            f"CPU-bound in the server: at its best level ({top.label}) the API process used "
            f"{share:.0%} of a core, {per:,.0f} CPU µs per request. It is one Python process: "
            "uvicorn's event loop, FastAPI's routing and pydantic validation and serialization, "
            "and a threadpool hop per request for the blocking append all share one GIL, so "
            "more throughput needs more API processes"
        )
    elif top.busy >= 0.9:
        verdict = (
            f"CPU-starved: at its best level ({top.label}) the API process got {share:.0%} of "
            f"a core ({per:,.0f} CPU µs per request) while all cores were {top.busy:.0%} busy "
            f"(the client threads of this process took {mine:.0%} of a core; the broker and "
            "the fold the rest)"
        )
    else:
        verdict = (
            f"waiting: at its best level ({top.label}) the API process used {share:.0%} of a "
            f"core ({per:,.0f} µs per request) with the machine {top.busy:.0%} busy, so "
            "requests wait (on the append's acknowledgement)"
        )
    return f"What limits the API's throughput (this run, from CPU shares): {verdict}."


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="M grants per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--withdrawals", type=int, default=50, help="K for write → enforced")
    parser.add_argument("--subjects", type=int, default=2_000, help="S subjects of the case")
    parser.add_argument("--events", type=int, default=4_000, help="N browsing events")
    parser.add_argument("--batch", type=int, default=1_000, help="baseline record() batch")
    parser.add_argument("--single", type=int, default=2_000, help="baseline one-by-one count")
    parser.add_argument("--window", type=float, default=1.5, help="probe seconds after t0")
    parser.add_argument("--partitions", type=int, default=6, choices=(3, 6))
    parser.add_argument("--bootstrap", help="HOST:PORT (default: CONSENTGATE_BOOTSTRAP)")
    parser.add_argument("--quick", action="store_true", help="smoke run; results not written")
    parser.add_argument("--keep", action="store_true", help="keep topics and groups")
    parser.add_argument("--note", default="", help="a remark for the results file")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.single = min(args.requests, 500), min(args.single, 200)
        args.withdrawals = min(args.withdrawals, 5)
        args.subjects, args.events = min(args.subjects, 200), min(args.events, 400)
        args.concurrency = args.concurrency[:2]
    args.events = max(args.events, args.subjects)
    return args


def run(args: argparse.Namespace, kafka: rb.Kafka, workdir: Path, res: Results) -> None:
    case = rb.make_case(kafka, workdir, args.partitions, args.subjects, args.events)
    api: ApiProc | None = None
    try:
        no_fold = serve_knows_no_fold()
        api = ApiProc(case, no_fold=no_fold)
        res.serve = api.command
        took = api.wait_ready()
        how = "" if no_fold else "; this serve has no --no-fold yet: it runs only the API"
        res.add("consent API start → /readyz 200", f"{took:.1f} s{how}")
        run_baselines(case, args, res)
        latest = run_api_loads(case, api, args, res)
        run_withdrawals(case, api, args, res, latest)
        res.add("consent API log lines with ERROR / Traceback", str(api.log_problems()))
        if case.fold is not None:
            res.add("consent fold counters", case.fold.counters())
            res.add("consent fold log lines with ERROR / Traceback", str(case.fold.log_problems()))
    finally:
        if api is not None:
            api.stop()
        case.close()


def method_notes(args: argparse.Namespace) -> list[str]:
    return [
        f"Method: one case (router_bench.make_case: {args.subjects:,} subjects with 1 analytics "
        f"+ 1-4 of {rb.PARTNERS} partner grants, folded into consent.state by a `consentgate "
        "consent fold` process that keeps running; then the browsing events). The baseline "
        "appends M analytics grants for fresh subjects through ConsentService in this process "
        "(change() + record() in batches, as make_case does; and one change per record(), "
        "sequential). The API phase sends M `POST /v1/subjects/{id}/grants` "
        '(`{"purpose": "analytics"}`, a fresh subject each) per concurrency level C from C '
        "threads of this process, one keep-alive httpx.Client each, all connected before the "
        "clock starts; changes/s = 202 answers / (common start → last answer); latency per "
        "request on the client. After each level the bench waits until the fold's consumer "
        "group has committed past the end of consent.changes (the fold commits after its "
        "consent.state transaction): fold changes/s = M / (first write → committed).",
        "Write → visible / enforced: a router (`consentgate router`) on the case's topics, "
        f"then {args.withdrawals} withdrawals of analytics, one at a time, each through `POST "
        "/v1/subjects/{id}/withdrawals` on a warm connection, with router_bench.withdrawals' "
        "machinery: a probe event for the subject every 20 ms (event time = produce time) from "
        "~0.2 s before to 1.5 s after t0; t0 = this process's clock just before the POST. "
        "Visible = when a read_committed consumer of consent.state saw the fold's record; "
        "enforced = the produce time of the first probe from which on every analytics decision "
        "is a deny, minus t0 (granularity 20 ms). The machine is shared and noisy: 2 cores, "
        "with the broker, the fold, the API server, the router and the client threads all on "
        "it, so CPU shares are given with every throughput figure.",
    ]


def render(args: argparse.Namespace, bootstrap: str, res: Results, started: datetime) -> str:
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    report = res.report
    lines = [
        "# Consent HTTP API benchmark (bench/consent_api_bench.py)",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC (the run took {minutes:.1f} min)",
        f"- machine: nproc {os.cpu_count()}, {rb.cpu_model()}, {rb.mem_total_gib():.1f} GiB "
        f"RAM; load average before {report.load_at_start}, after {rb.loadavg()}; shared and "
        "noisy (the broker runs on the same 2 cores)",
        f"- Python {platform.python_version()}; {rb.KAFKA} ({bootstrap})",
        f"- {report.code} (at the start of the run)",
        f"- command: `.venv/bin/python bench/consent_api_bench.py {rb.shown_args()}`; "
        f"requests {args.requests:,} per level, concurrency {args.concurrency}, withdrawals "
        f"{args.withdrawals}, subjects {args.subjects:,}, events {args.events:,}, partitions "
        f"{args.partitions}",
        f"- API server: `{res.serve}`",
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
    res = Results(rb.Report(load_at_start=rb.loadavg(), code=rb.code_version()))
    workdir = Path(tempfile.mkdtemp(prefix="consent-api-bench-"))
    failed = False
    with open_cluster() as cluster:
        say(f"cluster: {cluster.kind} at {cluster.bootstrap}; tag {tag}; files in {workdir}")
        kafka = rb.Kafka(cluster.bootstrap, tag)
        try:
            run(args, kafka, workdir, res)
        except Exception as exc:  # noqa: BLE001 - keep what was measured, say what broke
            failed = True
            res.add("FAILED", f"{type(exc).__name__}: {exc}")
        finally:
            rb._stop_children()
            if args.keep:
                say(f"[cleanup] skipped (--keep): topics and groups contain {tag}")
            else:
                say("[cleanup]")
                kafka.cleanup()
    res.report.notes.extend(method_notes(args))
    note = limits_note(res)
    if note:
        res.report.notes.append(note)
    if args.note:
        res.report.notes.append(args.note)
    text = render(args, cluster.bootstrap, res, started)
    say("")
    say(text)
    if args.quick:
        say(f"--quick: results not written; logs in {workdir}")
    else:
        out = RESULTS_DIR / f"consent-api-{started:%Y%m%dT%H%M%SZ}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        say(f"written to {out.relative_to(REPO)}; logs in {workdir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
