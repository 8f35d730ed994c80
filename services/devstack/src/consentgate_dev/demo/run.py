"""``make demo``: the job-site case on the local broker, from nothing to an audit report.

1. find or start a cluster (the local JVM broker by default);
2. create the case's topics (a fresh ``.demo-<time>`` suffix per run) and a generated policy
   with 38 client companies;
3. start the consent service (``consentgate consent serve``: the HTTP API and its fold
   child), write consent for 74,878 students (7,983 never consent to partner sharing)
   through the service's write path in this process (as a bulk import does), and wait until
   consent-state holds it; then produce their browsing events and decline-probability
   scores;
4. start a router worker and wait for every event to be decided, showing progress;
5. withdraw one student's partner sharing through the HTTP API and wait for each partner's
   retraction, with its latency from the request (the demo fails if one does not appear);
6. run the independent audit and print its report (audit.html, audit.json), then save PNG
   screenshots of the console (overview, the withdrawn student's page, the first partner's
   page) beside summary.json, with Debian's chromium when it is installed.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # implicit re-export
    AdminClient,
    NewTopic,
)

from consentgate.consent.changelog import ChangeLog
from consentgate.consent.service import ConsentService
from consentgate.consent.state_reader import StateReader
from consentgate.ops.audit import AuditOptions, AuditReport, AuditTopics, run_audit
from consentgate.ops.audit_html import render_html
from consentgate.policy import Policy, PseudonymKeys, load_policy
from consentgate.router.outputs import HEADER
from consentgate.serde import Serde
from consentgate_dev.cluster import open_cluster
from consentgate_dev.demo.case import CaseSpec, produce_events, write_consent
from consentgate_dev.demo.policygen import PolicyPlan, partner_ids, policy_yaml
from consentgate_dev.errors import DemoFailed
from consentgate_dev.screenshots import save_screenshots
from consentgate_dev.services import ServiceError, ServiceProcess
from consentgate_dev.settings import DevSettings

__all__ = ["DemoOptions", "run_demo"]

DEMO_MASTER_KEY = "demo-only-master-key-not-a-secret"


def _master_key() -> str:
    """The pseudonym master key the demo's router and its audit share."""
    return os.environ.get("CONSENTGATE_PSEUDONYM_MASTER_KEY", DEMO_MASTER_KEY)


API_PORT = 8070
FOLD_PORT = 8071
ROUTER_PORT = 6067
WITHDRAWN = "student-00001"  # the subject who withdraws in step 5


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
    settings = DevSettings()
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
        policy = load_policy(policy_path)
        changelog = ChangeLog(conf, plan.changes_topic, serde)
        service = ConsentService(policy, changelog)
        procs: list[ServiceProcess] = []
        try:
            _say(f"[3/6] consent and events for {options.students:,} students")
            fold_group = f"demo-fold-{workdir.name}"
            token = os.environ.get("CONSENTGATE_API_TOKEN") or secrets.token_urlsafe(24)
            console = _console_login()
            serve = _start_serve(
                cluster.bootstrap, policy_path, plan, workdir, fold_group, token, console
            )
            procs.append(serve)
            spec = CaseSpec(
                students=options.students,
                partners=plan.partners,
                never_shared=options.never_shared,
            )
            rng = random.Random(spec.seed)  # noqa: S311 - reproducible test data
            data = write_consent(spec, service, rng, progress=_say)
            _wait_committed(
                conf,
                fold_group,
                plan.changes_topic,
                serve,
                "consent fold: changes in consent-state",
            )
            produce_events(
                spec,
                data,
                rng,
                settings.producer_config(cluster.bootstrap),
                after=datetime.now(UTC),
                browsing_topic=plan.browsing_topic,
                scores_topic=plan.scores_topic,
                serde=serde,
                progress=_say,
            )
            _say("[4/6] router")
            router = _start_router(cluster.bootstrap, policy_path, plan, workdir)
            procs.append(router)
            loaded, took = _route_all(
                conf,
                f"demo-router-{workdir.name}",
                [plan.browsing_topic, plan.scores_topic],
                router,
            )
            _wait_committed(
                conf,
                f"demo-router-{workdir.name}",
                plan.changes_topic,
                router,
                "router: consent changes read",
            )
            serve.wait_ready(timeout=300, every=0.5)
            latencies = _withdraw_one(conf, token, serde, plan)
            router.stop()
            _say("[6/6] independent audit")
            report = _audit(conf, policy, serde, plan, workdir)
            pictures = _screenshots(console, WITHDRAWN, plan.partners[0], workdir)
        finally:
            for proc in reversed(procs):
                proc.stop()
            changelog.close()
        summary = {
            "students": options.students,
            "events": data.events,
            "consent_view_load_s": round(loaded, 1),
            "events_per_s": round(data.events / took),
            "retraction_latency_ms": latencies,
            "audit_ok": report.ok,
            "screenshots": [p.name for p in pictures],
        }
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
        if not options.keep:
            _delete_topics(conf, topics)
        return 0 if report.ok else 1


def _delete_topics(conf: dict[str, Any], topics: list[str]) -> None:
    """Delete the demo's topics and wait for the broker's answers (before it may stop)."""
    admin = AdminClient(conf)
    failed = []
    for topic, future in admin.delete_topics(topics, operation_timeout=60).items():
        try:
            future.result(timeout=60)
        except Exception as exc:  # noqa: BLE001 - reported, the run's verdict stands
            failed.append(f"{topic}: {exc}")
    if failed:
        _say(f"      could not delete {len(failed)} demo topic(s): {'; '.join(failed[:3])}")


def _audit(
    conf: dict[str, Any], policy: Policy, serde: Serde, plan: PolicyPlan, workdir: Path
) -> AuditReport:
    """The independent audit of everything the run wrote; its HTML report in ``workdir``."""
    report = run_audit(
        conf,
        policy,
        serde,
        AuditTopics(
            plan.changes_topic, plan.decisions_topic, plan.dlq_topic, plan.provisions_topic
        ),
        keys=PseudonymKeys(master_key=pydantic.SecretStr(_master_key())),
        options=AuditOptions(workers=min(2, os.cpu_count() or 1)),
        progress=lambda m: _say(f"      {m}"),
    )
    _say(report.render())
    html = workdir / "audit.html"
    data = report.to_json()
    html.write_text(render_html(data), encoding="utf-8")
    (workdir / "audit.json").write_text(json.dumps(data, indent=2, default=str))
    _say(f"      audit report: {html}")
    return report


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


def _route_all(
    conf: dict[str, Any], group: str, sources: list[str], router: ServiceProcess
) -> tuple[float, float]:
    """Wait for readiness, then until the router has committed every raw record (its outputs
    commit with its offsets); (load seconds, route seconds)."""
    events = sum(_count(conf, t) for t in sources)  # raw topics: plain producers, no markers
    started = time.monotonic()
    router.wait_ready(timeout=300, every=0.5)
    loaded = time.monotonic() - started
    _say(f"      consent view loaded in {loaded:.1f} s")
    t0 = time.monotonic()
    last = -1
    while (done := _committed(conf, group, sources)) < events:
        if not router.running():
            raise ServiceError(f"router exited; see {router.log}")
        if done != last:
            rate = done / max(time.monotonic() - t0, 1e-9)
            _say(f"      decided {done:,}/{events:,} ({rate:,.0f} events/s)")
            last = done
        time.sleep(2.0)
    took = time.monotonic() - t0
    _say(f"      all {events:,} events decided in {took:.1f} s ({events / took:,.0f} events/s)")
    stale = _stale_outcomes(ROUTER_PORT)
    if stale:  # a healthy run has none: the consent pipeline kept up with every event
        raise DemoFailed(
            f"the router denied {stale:,} sink outcomes as consent_state_stale; see {router.log}"
        )
    return loaded, took


def _stale_outcomes(port: int) -> int:
    """Sink outcomes the router on ``port`` denied as consent_state_stale (its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        int(float(line.rpartition(" ")[2]))
        for line in text.splitlines()
        if line.startswith("consentgate_sink_outcomes_total{")
        and 'reason="consent_state_stale"' in line
    )


def _wait_committed(
    conf: dict[str, Any], group: str, topic: str, proc: ServiceProcess, what: str
) -> None:
    """Until ``group`` has committed past every record in ``topic`` (for the fold: consent-
    state holds every change; for the router: every change is read and settled)."""
    total = _count(conf, topic)
    t0 = time.monotonic()
    last = -1
    while (done := _committed(conf, group, [topic])) < total:
        if not proc.running():
            raise ServiceError(f"{proc.name} exited {proc.proc.returncode}; see {proc.log}")
        if done != last and time.monotonic() - t0 > 1:
            _say(f"      {what}: {done:,}/{total:,}")
            last = done
        time.sleep(1.0)
    took = time.monotonic() - t0
    _say(f"      {what}: all {total:,} (waited {took:.1f} s)")


def _withdraw_one(
    conf: dict[str, Any], token: str, serde: Serde, plan: PolicyPlan
) -> dict[str, float]:
    """student-00001 withdraws partner sharing with each partner it granted, one HTTP
    request each to the consent API; waits for each retraction and returns its latency (ms)
    from the moment its request was sent."""
    subject = WITHDRAWN
    _say(f"[5/6] withdrawal: {subject} withdraws sharing with every partner (HTTP API)")
    reader = StateReader(conf, plan.state_topic, serde)
    try:
        timeline = reader.read(subject).timeline
    finally:
        reader.close()
    keys = timeline.keys() if timeline is not None else ()
    partners = sorted({r for p, r in keys if p == "partner_sharing" and r})
    sent: list[tuple[str, datetime, str]] = []
    for partner in partners:
        at = datetime.now(UTC)
        body = {"purpose": "partner_sharing", "recipient": partner, "method": "WEB_FORM"}
        (receipt,) = _post(f"/v1/subjects/{subject}/withdrawals", body, token)["changes"]
        _say(
            f"      POST withdrawal {partner}: change {receipt['change_id']} at "
            f"{receipt['topic']}[{receipt['partition']}]@{receipt['offset']}"
        )
        sent.append((partner, at, receipt["change_id"]))
    latencies: dict[str, float] = {}
    for partner, at, change_id in sent:
        topic = plan.partner_topic(partner)
        written = _retraction(conf, topic, change_id, timeout=60)
        if written is None:
            raise RuntimeError(f"no retraction of {subject} in {topic} within 60 s")
        latency = (written - at).total_seconds() * 1000
        latencies[partner] = round(latency, 1)
        _say(f"      {topic}: retraction written {latency:,.0f} ms after the request")
    if not partners:
        _say(f"      {subject} shares with no partner: nothing to retract")
    return latencies


def _post(path: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    """POST JSON to the demo's consent API; the decoded answer (raises on an HTTP error)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{API_PORT}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        answer: dict[str, Any] = json.load(response)
    return answer


def _retraction(
    conf: dict[str, Any], topic: str, change_id: str, timeout: float
) -> datetime | None:
    """When the retraction citing ``change_id`` was written to ``topic`` (None: not in
    time)."""
    consumer = Consumer(
        {
            **conf,
            "group.id": f"consentgate-demo-retraction-{time.time_ns()}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    wanted = change_id.encode()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error() is not None or msg.value() is not None:
                    continue
                if dict(msg.headers() or ()).get(HEADER.CONSENT_CHANGE) == wanted:
                    return datetime.fromtimestamp(msg.timestamp()[1] / 1000, UTC)
        return None
    finally:
        consumer.close()


def _console_login() -> tuple[str, str]:
    """The demo console's operator: a fresh password each run."""
    return ("operator", secrets.token_urlsafe(18))


def _console_environ(
    plan: PolicyPlan, workdir: Path, fold_group: str, login: tuple[str, str]
) -> dict[str, str]:
    """The console of the demo's consent service: its operator, fresh keys, the demo's
    topics, and the audit files the run writes (shown on the overview)."""
    return {
        "CONSENTGATE_CONSOLE_USER": login[0],
        "CONSENTGATE_CONSOLE_PASSWORD": login[1],
        "CONSENTGATE_CONSOLE_SESSION_KEY": secrets.token_urlsafe(36),
        "CONSENTGATE_CONSOLE_LINK_KEY": secrets.token_urlsafe(36),
        "CONSENTGATE_CONSOLE_BASE_URL": f"http://127.0.0.1:{API_PORT}",
        "CONSENTGATE_CONSOLE_SECURE_COOKIES": "false",  # plain HTTP on 127.0.0.1
        "CONSENTGATE_CONSOLE_FOLD_GROUP": fold_group,
        "CONSENTGATE_CONSOLE_AUDIT_JSON": str(workdir / "audit.json"),
        "CONSENTGATE_CONSOLE_AUDIT_HTML": str(workdir / "audit.html"),
        "CONSENTGATE_ROUTER_TOPICS__DECISIONS": plan.decisions_topic,
        "CONSENTGATE_ROUTER_TOPICS__PROVISIONS": plan.provisions_topic,
        "CONSENTGATE_ROUTER_TOPICS__DEAD_LETTERS": plan.dlq_topic,
    }


def _screenshots(login: tuple[str, str], subject: str, recipient: str, workdir: Path) -> list[Path]:
    """PNGs of the console's overview, ``subject``'s and ``recipient``'s pages in
    ``workdir`` (none, with the reason, without a browser)."""
    saved = save_screenshots(f"http://127.0.0.1:{API_PORT}", login, subject, recipient, workdir)
    if saved:
        _say(f"      console screenshots: {', '.join(p.name for p in saved)} in {workdir}")
    else:
        _say("      console screenshots: none (no chromium here; see the log above)")
    return saved


def _start_serve(  # noqa: PLR0917 - one private call site
    bootstrap: str,
    policy: Path,
    plan: PolicyPlan,
    workdir: Path,
    fold_group: str,
    token: str,
    console: tuple[str, str],
) -> ServiceProcess:
    """``consentgate consent serve``: the consent API with its console, and its fold child
    (group ``fold_group``), logging to ``workdir/serve.log``."""
    cmd = [
        *("consent", "serve", "--policy", str(policy), "--port", str(API_PORT)),
        *("--changes-topic", plan.changes_topic, "--state-topic", plan.state_topic),
        *("--dlq-topic", plan.dlq_topic, "--fold-group", fold_group),
        *("--fold-web-port", str(FOLD_PORT)),
    ]
    env = {"CONSENTGATE_API_TOKEN": token, **_console_environ(plan, workdir, fold_group, console)}
    serve = _spawn(cmd, bootstrap, workdir / "serve.log", API_PORT, env)
    serve.name = "consent API"
    return serve


def _spawn(
    args: list[str],
    bootstrap: str,
    log_path: Path,
    port: int,
    extra_env: dict[str, str] | None = None,
) -> ServiceProcess:
    """``consentgate ARGS`` as a child process logging to ``log_path``, ready on ``port``."""
    env = {
        **(extra_env or {}),
        "CONSENTGATE_BOOTSTRAP": bootstrap,
        "CONSENTGATE_PSEUDONYM_MASTER_KEY": _master_key(),
    }
    return ServiceProcess(args, env, log_path, port, append=False)


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


def _start_router(bootstrap: str, policy: Path, plan: PolicyPlan, workdir: Path) -> ServiceProcess:
    cmd = [
        "router",
        "--policy",
        str(policy),
        "--app-id",
        f"demo-router-{workdir.name}",
        "--web-port",
        str(ROUTER_PORT),
        "--consent-wait",
        "10",
        *plan.router_topic_args(),
    ]
    router = _spawn(cmd, bootstrap, workdir / "router.log", ROUTER_PORT)
    router.name = "router"
    return router
