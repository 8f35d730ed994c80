"""``make demo``: the job-site case on the local broker, from nothing to an audit report.

1. find or start a cluster (the local JVM broker by default);
2. create the case's topics (a fresh ``.demo-<time>`` suffix per run) and a generated policy
   with 38 client companies;
3. write consent for 74,878 students (7,983 never consent to partner sharing) through the
   consent writer, and produce their browsing events and decline-probability scores;
4. start a router worker and wait for every event to be decided, showing progress;
5. withdraw one student's consent and show the retraction in that partner's topic;
6. run the independent audit and print its report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # implicit re-export
    AdminClient,
    NewTopic,
)

from consentgate.cluster import open_cluster
from consentgate.consent.writer import ConsentWriter, new_change
from consentgate.demo.case import CaseSpec, generate
from consentgate.demo.policygen import PolicyPlan, partner_ids, policy_yaml
from consentgate.ops.audit import AuditTopics, run_audit
from consentgate.policy import load_policy
from consentgate.serde import Serde
from consentgate.settings import Settings

__all__ = ["DemoOptions", "run_demo"]

DEMO_MASTER_KEY = "demo-only-master-key-not-a-secret"


@dataclass(frozen=True)
class DemoOptions:
    students: int = 74_878
    partners: int = 38
    never_shared: int = 7_983
    partitions: int = 6
    keep: bool = False  # keep the topics afterwards


def _say(text: str) -> None:
    print(text, flush=True)


def _count(conf: dict[str, Any], topic: str) -> int:
    consumer = Consumer({**conf, "group.id": "consentgate-demo-count"})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] or 0
            for p in meta.topics[topic].partitions
        )
    finally:
        consumer.close()


def run_demo(options: DemoOptions) -> int:
    settings = Settings()
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    plan = PolicyPlan(
        partner_ids(options.partners), partner_ids(options.partners)[:3], suffix=f".demo-{stamp}"
    )
    workdir = settings.state_dir / "demo" / stamp
    workdir.mkdir(parents=True, exist_ok=True)
    policy_path = workdir / "policy.yaml"
    policy_path.write_text(policy_yaml(plan))
    _say(f"[1/6] cluster (topics suffixed {plan.suffix}; files in {workdir})")
    with open_cluster(settings) as cluster:
        conf = settings.kafka_config(cluster.bootstrap)
        _say(f"      {cluster.kind} Kafka at {cluster.bootstrap}")
        topics = _create_topics(conf, plan, options.partitions)
        _say(f"[2/6] {len(topics)} topics created; policy {policy_path}")
        serde = Serde.from_settings(settings)
        writer = ConsentWriter(
            cluster.bootstrap,
            serde=serde,
            settings=settings,
            changes_topic=plan.changes_topic,
            state_topic=plan.state_topic,
        )
        _say(f"[3/6] consent and events for {options.students:,} students")
        spec = CaseSpec(
            students=options.students, partners=plan.partners, never_shared=options.never_shared
        )
        data = generate(
            spec,
            writer,
            settings.producer_config(cluster.bootstrap),
            browsing_topic=plan.browsing_topic,
            scores_topic=plan.scores_topic,
            serde=serde,
            progress=_say,
        )
        _say("[4/6] router")
        router, log_path, port = _start_router(cluster.bootstrap, policy_path, plan, workdir)
        try:
            loaded, took = _route_all(
                conf,
                f"demo-router-{workdir.name}",
                [plan.browsing_topic, plan.scores_topic],
                router,
                log_path,
                port,
            )
            _withdraw_one(conf, writer, plan)
        finally:
            router.send_signal(signal.SIGTERM)
            router.wait(30)
        _say("[6/6] independent audit")
        report = run_audit(
            conf,
            load_policy(policy_path),
            serde,
            AuditTopics(plan.changes_topic, plan.decisions_topic, plan.dlq_topic),
            progress=lambda m: _say(f"      {m}"),
        )
        _say(report.render())
        summary = {
            "students": options.students,
            "events": data.events,
            "consent_view_load_s": round(loaded, 1),
            "events_per_s": round(data.events / took),
            "audit_ok": report.ok,
        }
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
        if not options.keep:
            AdminClient(conf).delete_topics(topics)
        return 0 if report.ok else 1


def _committed(conf: dict[str, Any], group: str, topics: list[str]) -> int:
    """Raw records the router's group has committed (decided, outputs committed with them)."""
    consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in consumer.list_topics(t, timeout=10).topics[t].partitions
        ]
        return sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10))
    finally:
        consumer.close()


def _route_all(  # noqa: PLR0917 - one private call site
    conf: dict[str, Any],
    group: str,
    sources: list[str],
    router: subprocess.Popen[bytes],
    log_path: Path,
    port: int,
) -> tuple[float, float]:
    """Wait for readiness, then until the router has committed every raw record (its outputs
    commit with its offsets); (load seconds, route seconds)."""
    events = sum(_count(conf, t) for t in sources)  # raw topics: plain producers, no markers
    started = time.monotonic()
    _wait_ready(port, router, log_path)
    loaded = time.monotonic() - started
    _say(f"      consent view loaded in {loaded:.1f} s")
    t0 = time.monotonic()
    last = -1
    while (done := _committed(conf, group, sources)) < events:
        if router.poll() is not None:
            raise RuntimeError(f"router exited; see {log_path}")
        if done != last:
            rate = done / max(time.monotonic() - t0, 1e-9)
            _say(f"      decided {done:,}/{events:,} ({rate:,.0f} events/s)")
            last = done
        time.sleep(2.0)
    took = time.monotonic() - t0
    _say(f"      all {events:,} events decided in {took:.1f} s ({events / took:,.0f} events/s)")
    return loaded, took


def _withdraw_one(conf: dict[str, Any], writer: ConsentWriter, plan: PolicyPlan) -> None:
    _say("[5/6] withdrawal: student-00001 withdraws sharing with every partner")
    timeline = writer.timelines.get("student-00001")
    keys = timeline.keys() if timeline is not None else ()
    partners = sorted({r for p, r in keys if p == "partner_sharing" and r})
    for partner in partners:
        writer.write(new_change("student-00001", "WITHDRAW", "partner_sharing", partner))
    writer.flush()
    time.sleep(2.0)
    for partner in partners:
        topic = plan.partner_topic(partner)
        _say(f"      {topic}: retraction written ({_count(conf, topic):,} records)")


def _create_topics(conf: dict[str, Any], plan: PolicyPlan, partitions: int) -> list[str]:
    """Every topic of the demo's router, created; returns their names."""
    topics = [*plan.core_topics(), *plan.sink_topics()]
    admin = AdminClient(conf)
    new = [
        NewTopic(
            t,
            num_partitions=partitions,
            replication_factor=1,
            config={"cleanup.policy": "compact"} if t == plan.state_topic else {},
        )
        for t in topics
    ]
    for future in admin.create_topics(new, operation_timeout=60).values():
        future.result(timeout=60)
    return topics


def _start_router(
    bootstrap: str, policy: Path, plan: PolicyPlan, workdir: Path
) -> tuple[subprocess.Popen[bytes], Path, int]:
    port = 6067
    log_path = workdir / "router.log"
    cmd = [
        sys.executable,
        "-m",
        "consentgate",
        "router",
        "--policy",
        str(policy),
        "--app-id",
        f"demo-router-{workdir.name}",
        "--web-port",
        str(port),
        "--consent-wait",
        "10",
        *plan.router_topic_args(),
    ]
    env = {
        **os.environ,
        "CONSENTGATE_BOOTSTRAP": bootstrap,
        "CONSENTGATE_PSEUDONYM_MASTER_KEY": os.environ.get(
            "CONSENTGATE_PSEUDONYM_MASTER_KEY", DEMO_MASTER_KEY
        ),
    }
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc, log_path, port


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"router exited {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"router not ready after 300 s; see {log_path}")
