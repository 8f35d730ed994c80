"""Console page load times on a real broker: a subject with 10,000 decisions, a recipient
with 100,000 provisions.

    .venv/bin/python bench/console_bench.py [--decisions 10000] [--provisions 100000]
        [--other-decisions 40000] [--repeat 5] [--bootstrap HOST:PORT] [--quick] [--keep]

Fresh topics (suffixed with the run's tag, 3 partitions) hold synthetic records written
directly with the product's serde, the shapes the router writes (this measures the console's
reads, not the router): the subject's consent changes and its consent-state record (folded by
a ``consentgate consent fold`` process), ``--decisions`` decision records of the subject
among ``--other-decisions`` of other subjects (the decisions topic is read whole, as
``report subject`` does), and ``--provisions`` provision records for recipient ``client-01``,
one per subject and day (the ledger is read whole for a recipient). Then
``consentgate consent serve --no-fold`` with the console on, and with one keep-alive client
logged in through the form:

- cold: each page with ``fresh=1`` (the report is read from Kafka again), ``--repeat`` times;
- warm: the next page of the same report (served from the console's report cache);
- the recipient CSV download (whole record), and ``consentgate report ... --json`` (the CLI
  over the same topics) once each, for comparison.

Times are from request sent to the last body byte (httpx, on 127.0.0.1: the server's time).
Writes bench/results/console.md (``--quick``: a smoke run, only printed). Topics are deleted
afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine
from consentgate.consent.changelog import ChangeLog
from consentgate.consent.requests import ChangeRequest
from consentgate.consent.service import ConsentService
from consentgate.consent.state_reader import StateReader
from consentgate.models.records import DecisionRecord, ProvisionRecord, SinkOutcome
from consentgate.policy import load_policy
from consentgate.serde import Serde
from consentgate_dev.cluster import open_cluster
from consentgate_dev.demo.policygen import PolicyPlan, policy_yaml
from consentgate_dev.services import ServiceProcess

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "console.md"
PARTITIONS = 3
USER, PASSWORD = "bench", "bench-password-0123456789"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def say(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", flush=True)


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 20}
    )
    n = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.1)
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)
    return n


def decisions(subject: str, n: int, others: int, topic: str) -> Iterable[DecisionRecord]:
    start = datetime.now(UTC) - timedelta(hours=2)
    sinks = ("analytics", "partner.client-01.browsing", "partner.client-02.browsing")
    for i in range(n + others):
        who = subject if i % max((n + others) // max(n, 1), 1) == 0 and n > 0 else f"o-{i}"
        t = start + timedelta(milliseconds=i * 50)
        yield DecisionRecord(
            event_id=uuid.uuid4(),
            source_topic=topic,
            source_partition=0,
            source_offset=i,
            subject_id=who,
            event_time=t,
            decided_at=t,
            policy_version="bench",
            outcomes=[
                SinkOutcome(sink=s, allowed=k != 2, reason="allowed" if k != 2 else "not_granted")
                for k, s in enumerate(sinks)
            ],
        )


def provisions(n: int, days: int, policy_version: str) -> Iterable[ProvisionRecord]:
    first = date.today() - timedelta(days=days - 1)
    per_day = -(-n // days)
    for i in range(n):
        day = first + timedelta(days=i // per_day)
        yield ProvisionRecord(
            provision_id=f"p-{i}",
            provision_date=day,
            recipient_id="client-01",
            recipient_name="Client Company 01 K.K.",
            recipient_address="01-1 Example-cho, Chiyoda-ku, Tokyo",
            recipient_country="JP",
            subject_id=f"r-{i % per_day}",
            subject_key=uuid.uuid4().hex * 2,
            sink="partner.client-01.browsing",
            purpose="partner_sharing",
            data_items=["event_id", "event_time", "event_type", "job_id", "company_id"],
            consent_change_id=str(uuid.uuid4()),
            consent_method="WEB_FORM",
            consent_confirmed_at=datetime.combine(day, datetime.min.time(), UTC),
            first_event_id=uuid.uuid4(),
            policy_version=policy_version,
        )


def timed(get: Callable[[], httpx.Response]) -> float:
    t0 = time.perf_counter()
    answer = get()
    took = time.perf_counter() - t0
    assert answer.status_code == 200, (answer.status_code, answer.text[:500])
    return took


def summary(samples: list[float]) -> str:
    if len(samples) == 1:
        return f"{samples[0]:.3f} s"
    return (
        f"median {statistics.median(samples):.3f} s (min {min(samples):.3f}, "
        f"max {max(samples):.3f}, n={len(samples)})"
    )


def run(  # noqa: PLR0915 - one run, step by step
    args: argparse.Namespace, bootstrap: str, workdir: Path
) -> list[tuple[str, str]]:
    tag = uuid.uuid4().hex[:8]
    plan = PolicyPlan(partners=["client-01", "client-02"], score_partners=[], suffix=f".b{tag}")
    policy_path = workdir / "policy.yaml"
    policy_path.write_text(policy_yaml(plan))
    policy = load_policy(policy_path)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [*plan.core_topics(), *plan.sink_topics()]
    compact = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
    new = [
        NewTopic(t, PARTITIONS, 1, config=compact if t == plan.state_topic else {}) for t in topics
    ]
    for f in admin.create_topics(new, operation_timeout=30).values():
        f.result(30)
    serde = Serde()
    kafka = {"bootstrap.servers": bootstrap}
    procs: list[ServiceProcess] = []
    try:
        subject = f"bench-subject-{tag}"
        fold = ServiceProcess(
            [
                *("consent", "fold", "--policy", str(policy_path)),
                *("--changes-topic", plan.changes_topic, "--state-topic", plan.state_topic),
                *("--dlq-topic", plan.dlq_topic, "--group", f"fold-{tag}"),
                *("--web-port", str(fold_port := free_port())),
            ],
            {"CONSENTGATE_BOOTSTRAP": bootstrap},
            workdir / "fold.log",
            fold_port,
        )
        procs.append(fold)
        fold.wait_ready(180)
        changelog = ChangeLog(kafka, plan.changes_topic, serde)
        service = ConsentService(policy, changelog)
        changes = [
            service.change(
                ChangeRequest(subject_id=subject, action="GRANT", purpose=p, recipient=r),
                actor="bench",
            )
            for p, r in (("analytics", None), ("partner_sharing", "client-01"))
        ]
        service.record(changes)
        changelog.close()
        reader = StateReader(kafka, plan.state_topic, serde)
        assert reader.wait_visible(subject, [c.change_id for c in changes], 120) is not None
        reader.close()
        say(f"writing {args.decisions:,} + {args.other_decisions:,} decision records")
        t0 = time.monotonic()
        produce(
            bootstrap,
            plan.decisions_topic,
            (
                (str(d.event_id).encode(), serde.encode(d))
                for d in decisions(
                    subject, args.decisions, args.other_decisions, plan.browsing_topic
                )
            ),
        )
        say(f"  in {time.monotonic() - t0:.1f} s; writing {args.provisions:,} provisions")
        t0 = time.monotonic()
        produce(
            bootstrap,
            plan.provisions_topic,
            (
                (p.subject_id.encode(), serde.encode(p))
                for p in provisions(args.provisions, args.days, policy.version)
            ),
        )
        say(f"  in {time.monotonic() - t0:.1f} s")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            "CONSENTGATE_BOOTSTRAP": bootstrap,
            "CONSENTGATE_API_TOKEN": "bench-token-0123456789abcdef",
            "CONSENTGATE_CONSOLE_USER": USER,
            "CONSENTGATE_CONSOLE_PASSWORD": PASSWORD,
            "CONSENTGATE_CONSOLE_SESSION_KEY": "bench-session-key-0123456789abcdefghij",
            "CONSENTGATE_CONSOLE_SECURE_COOKIES": "false",
            "CONSENTGATE_CONSOLE_CACHE_SECONDS": "600",
            "CONSENTGATE_CONSOLE_FOLD_GROUP": f"fold-{tag}",
            "CONSENTGATE_ROUTER_TOPICS__DECISIONS": plan.decisions_topic,
            "CONSENTGATE_ROUTER_TOPICS__PROVISIONS": plan.provisions_topic,
            "CONSENTGATE_ROUTER_TOPICS__DEAD_LETTERS": plan.dlq_topic,
            "CONSENTGATE_ROUTER_TOPICS__CONSENT_CHANGES": plan.changes_topic,
            "CONSENTGATE_ROUTER_TOPICS__CONSENT_STATE": plan.state_topic,
        }
        console = ServiceProcess(
            [
                *("consent", "serve", "--port", str(port), "--policy", str(policy_path)),
                *("--changes-topic", plan.changes_topic, "--state-topic", plan.state_topic),
                "--no-fold",
            ],
            env,
            workdir / "console.log",
            port,
        )
        procs.append(console)
        console.wait_ready(180)
        client = httpx.Client(base_url=url, timeout=600)
        form = client.get("/console/login")
        token = CSRF.search(form.text)
        assert token is not None
        login = client.post(
            "/console/login",
            data={"user": USER, "password": PASSWORD, "csrf_token": token.group(1)},
        )
        assert login.status_code == 303, login.text
        subject_page = {"id": subject}
        recipient_page = {"id": "client-01"}
        busy0 = machine.machine_busy()
        rows: list[tuple[str, str]] = []

        def measure(label: str, path: str, params: dict[str, str], n: int) -> None:
            samples = [timed(lambda: client.get(path, params=params)) for _ in range(n)]
            rows.append((label, summary(samples)))
            say(f"{label}: {summary(samples)}")

        measure(
            f"subject page, cold (report read; {args.decisions:,} decisions of the subject "
            f"among {args.decisions + args.other_decisions:,})",
            "/console/subject",
            {**subject_page, "fresh": "1"},
            args.repeat,
        )
        measure(
            "subject page, warm (page 2 of latest decisions, cached report)",
            "/console/subject",
            {**subject_page, "p_latest": "2"},
            args.repeat,
        )
        measure(
            f"recipient page, cold (report read; {args.provisions:,} provisions)",
            "/console/recipient",
            {**recipient_page, "fresh": "1"},
            args.repeat,
        )
        measure(
            "recipient page, warm (page 2, cached report)",
            "/console/recipient",
            {**recipient_page, "p": "2"},
            args.repeat,
        )
        measure(
            "recipient CSV download (cached report, whole record)",
            "/console/recipient.csv",
            recipient_page,
            1,
        )
        measure("overview, cold", "/console/overview", {}, 1)
        busy = machine.busy_share(busy0, machine.machine_busy())
        rows.append(("machine busy during the page measurements", f"{busy:.0%} of all cores"))
        cli_env = {**os.environ, **env}
        for kind, ident in (("subject", subject), ("recipient", "client-01")):
            t0 = time.perf_counter()
            done = subprocess.run(
                [
                    *(sys.executable, "-m", "consentgate", "report", kind, ident, "--json"),
                    *("--policy", str(policy_path)),
                ],
                env=cli_env,
                capture_output=True,
                timeout=900,
                check=False,
            )
            took = time.perf_counter() - t0
            assert done.returncode == 0, done.stderr[-2000:]
            rows.append(
                (f"for comparison: `consentgate report {kind} --json` (CLI)", f"{took:.2f} s")
            )
            say(f"CLI report {kind}: {took:.2f} s")
        client.close()
        return rows
    finally:
        for p in procs:
            p.stop()
        if not args.keep:
            for f in admin.delete_topics(topics, operation_timeout=30).values():
                with contextlib.suppress(Exception):  # best-effort cleanup
                    f.result(30)


def render(args: argparse.Namespace, bootstrap: str, rows: list[tuple[str, str]], load: str) -> str:
    lines = [
        "# Console page load times",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `bench/console_bench.py "
        f"--decisions {args.decisions} --other-decisions {args.other_decisions} "
        f"--provisions {args.provisions} --repeat {args.repeat}`.",
        "",
        f"- Machine: {machine.cpu_model()}, {os.cpu_count()} cores, "
        f"{machine.mem_total_gib():.1f} GiB; load average at the start: {load}, at the end: "
        f"{machine.loadavg()} (shared with other work)",
        f"- Python {platform.python_version()}; Kafka at {bootstrap} (single local broker)",
        "- Records are synthetic, written with the product's serde in the router's shapes; "
        "times are request to last byte from a keep-alive client on 127.0.0.1.",
        "",
        "| what | time |",
        "|---|---|",
        *(f"| {label} | {value} |" for label, value in rows),
        "",
        "Reading: a cold page is one `consentgate report` read (the decisions topic and the "
        "provision ledger are read whole, as the CLI reads them) plus rendering one page; "
        "pages of the same report within `CONSENTGATE_CONSOLE_CACHE_SECONDS` (default 15 s) "
        "are served from the cache.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--other-decisions", type=int, default=40_000)
    parser.add_argument("--provisions", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30, help="provision dates spread over")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--bootstrap")
    parser.add_argument("--quick", action="store_true", help="small sizes, print only")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.decisions, args.other_decisions, args.provisions, args.repeat = 500, 500, 2000, 2
    if args.bootstrap:
        os.environ["CONSENTGATE_BOOTSTRAP"] = args.bootstrap
    load = machine.loadavg()
    with open_cluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        say(f"cluster at {cluster.bootstrap}")
        rows = run(args, cluster.bootstrap, Path(tmp))
        text = render(args, cluster.bootstrap, rows, load)
    print(text)
    if not args.quick:
        RESULTS.write_text(text)
        say(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
