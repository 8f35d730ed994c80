"""Replay benchmark: records/s of ``consentgate replay`` into versioned topics.

    .venv/bin/python bench/replay_bench.py [--events 100000] [--subjects 10000]
        [--partners 38] [--partitions 6] [--bootstrap HOST:PORT] [--keep]

Cluster: ``--bootstrap``, else ``CONSENTGATE_BOOTSTRAP``, else ``open_cluster()``. On fresh
topics suffixed ``.rbench-<hex>`` (deleted afterwards unless ``--keep``):

1. setup: consent timelines for S subjects (1 analytics + 1-4 of the partners' grants each,
   built with ``timeline.apply``) produced straight to consent.state, as the fold would have
   compacted them (consent.changes stays empty); N browsing events timed after the grants;
   policy: 1 analytics + P partner browsing sinks (the case's shape);
2. ``consentgate replay --source RAW --from earliest --consent now --into bench --json`` as a
   subprocess (the command as operators run it), one run, the output topics created by it.

Reported: the judging pass's records/s (the replay's own ``pass_seconds``: reading the range,
the router core, producing, the transactions), the whole command's wall time (process start
to exit: imports, consent load, topic creation), the replay process's CPU seconds
(``RUSAGE_CHILDREN``) per record, and the records it wrote (the sum of the versioned topics'
end offsets). Written to bench/results/replay.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from consentgate.consent.timeline import Timeline, apply
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod
from consentgate.serde import Serde
from consentgate.settings import Settings
from consentgate_dev.cluster import open_cluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consentgate_dev.demo.policygen import PolicyPlan, partner_ids, policy_yaml
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "replay.md"
MASTER_KEY = "bench-only-master-key-0123456789abcdef"


def say(text: str) -> None:
    print(text, flush=True)


def code_version() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    dirty = " with uncommitted changes" if git("status", "--porcelain", "services") else ""
    return f"{git('rev-parse', '--short', 'HEAD')}{dirty}"


def grant(subject: str, purpose: str, recipient: str | None, at: datetime) -> ConsentChange:
    return ConsentChange(
        change_id=str(uuid.uuid4()),
        subject_id=subject,
        action=ConsentAction.GRANT,
        purpose=purpose,
        recipient=recipient,
        effective_time=at,
        recorded_time=at,
        method=ConsentMethod.WEB_FORM,
    )


def produce_all(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(
        Settings().producer_config(
            bootstrap, **{"linger.ms": 20, "queue.buffering.max.messages": 1_000_000}
        )
    )
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0


def written(bootstrap: str, topics: list[str]) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rbench-watermarks"})
    try:
        total = 0
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            for p in meta.partitions:
                total += consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        return total
    finally:
        consumer.close()


def setup(args: argparse.Namespace, bootstrap: str, plan: PolicyPlan, work: Path) -> Path:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    compact = {"cleanup.policy": "compact"}
    new = [
        NewTopic(t, args.partitions, 1, config=compact if t == plan.state_topic else {})
        for t in [*plan.core_topics(), *plan.sink_topics()]
    ]
    for future in admin.create_topics(new, operation_timeout=30).values():
        future.result(timeout=30)
    policy = work / "policy.yaml"
    policy.write_text(policy_yaml(plan))
    serde, rng = Serde(), random.Random(12)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    subjects = [f"student-{i:06d}" for i in range(args.subjects)]
    states = []
    for s in subjects:
        tl: Timeline | None = apply(None, grant(s, "analytics", None, t0))
        for partner in rng.sample(plan.partners, rng.randint(1, 4)):
            tl = apply(tl, grant(s, "partner_sharing", partner, t0))
        assert tl is not None
        states.append((s.encode(), serde.encode(tl.record)))
    produce_all(bootstrap, plan.state_topic, states)
    say(f"setup: {len(states):,} consent timelines in {plan.state_topic}")
    events = []
    for i in range(args.events):
        s = rng.choice(subjects)
        datum = {
            "event_id": uuid.uuid4(),
            "subject_id": s,
            "event_time": t0 + timedelta(minutes=10, milliseconds=i),
            "event_type": "JOB_VIEW",
            "job_id": f"job-{i % 5000}",
            "company_id": rng.choice(plan.partners),
            "page_url": f"https://jobs.example/{i % 5000}",
            "country": "JP",
        }
        events.append((s.encode(), serde.encode(datum, "BrowsingEvent")))
    produce_all(bootstrap, plan.browsing_topic, events)
    say(f"setup: {len(events):,} browsing events in {plan.browsing_topic}")
    (work / "router.yaml").write_text(
        json.dumps(
            {
                "app_id": f"router{plan.suffix}",
                "topics": {
                    "consent_state": plan.state_topic,
                    "consent_changes": plan.changes_topic,
                    "decisions": plan.decisions_topic,
                    "provisions": plan.provisions_topic,
                    "dead_letters": plan.dlq_topic,
                },
            }
        )
    )
    return policy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--partners", type=int, default=38)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--bootstrap")
    parser.add_argument("--keep", action="store_true", help="keep the topics")
    args = parser.parse_args(argv)
    if args.bootstrap:
        os.environ["CONSENTGATE_BOOTSTRAP"] = args.bootstrap
    cluster = open_cluster()
    bootstrap = cluster.bootstrap
    plan = PolicyPlan(
        partners=partner_ids(args.partners),
        score_partners=[],
        suffix=f".rbench-{uuid.uuid4().hex[:8]}",
    )
    work = REPO / ".state" / "bench" / f"replay{plan.suffix}"
    work.mkdir(parents=True, exist_ok=True)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        policy = setup(args, bootstrap, plan, work)
        env = {
            **os.environ,
            "CONSENTGATE_BOOTSTRAP": bootstrap,
            "CONSENTGATE_PSEUDONYM_MASTER_KEY": MASTER_KEY,
        }
        cmd = [
            *(sys.executable, "-m", "consentgate", "replay"),
            *("--source", plan.browsing_topic, "--from", "earliest", "--consent", "now"),
            *("--into", "bench", "--id", f"bench{plan.suffix}", "--json"),
            *("--policy", str(policy), "--config", str(work / "router.yaml")),
        ]
        say("replay: " + " ".join(cmd[2:]))
        load_before = os.getloadavg()[0]
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        with (work / "replay.log").open("wb") as log:
            done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=log, check=False)
        wall = time.monotonic() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            say((work / "replay.log").read_text()[-3000:])
            return 1
        summary = json.loads(done.stdout)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (
            cpu_after.ru_stime - cpu_before.ru_stime
        )
        outputs = [f"{t}.bench" for t in [*plan.sink_topics(), plan.decisions_topic]]
        outputs.append(f"{plan.provisions_topic}.bench")
        records = written(bootstrap, outputs)
        events = summary["events"]
        rate = summary["records_per_second"]
        lines = [
            f"# Replay benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
            "",
            f"Machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}, "
            f"Kafka at {bootstrap} ({cluster.kind}, same machine), load average "
            f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after. Code: {code_version()}.",
            f"Case: {events:,} browsing events over {args.subjects:,} subjects, "
            f"{args.partitions} partitions; policy 1 analytics + {args.partners} partner sinks; "
            "consent now (consent.state loaded in full); into versioned topics (created).",
            "",
            "| measure | value |",
            "|---|---|",
            f"| judging pass (read range, router core, produce, transactions) | "
            f"**{rate:,.0f} records/s** ({summary['pass_seconds']:.1f} s) |",
            f"| whole command (start to exit: imports, consent load, topics) | "
            f"{events / wall:,.0f} records/s ({wall:.1f} s) |",
            f"| replay process CPU | {cpu:.1f} s, {cpu / events * 1e6:,.0f} µs/record |",
            f"| records written (sinks, decisions, provisions) | {records:,} "
            f"({records / events:.2f} per event) |",
            f"| allowed (analytics) | {summary['sinks']['analytics']['allowed']:,} |",
        ]
        text = "\n".join(lines) + "\n"
        say(text)
        RESULTS.write_text(text)
        say(f"written to {RESULTS.relative_to(REPO)}")
        return 0
    finally:
        if not args.keep:
            names = [t for t in admin.list_topics(timeout=10).topics if plan.suffix in t]
            for future in admin.delete_topics(names, operation_timeout=60).values():
                with contextlib.suppress(Exception):
                    future.result(timeout=60)
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
