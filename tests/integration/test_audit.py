"""The independent audit on the real broker: PASS on a clean run, and each way of fooling
the first audit caught by its own test (issue 12): a record written by hand into a partner
topic, a record after its retraction, a missing provision, evidence pointing at another raw
event, a leak hidden past the raw topic's start (deleteRecords), a record in a sink only a
previous policy had; and the ``consentgate audit`` command's exit codes, JSON and HTML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Message, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from consentgate.ops.reader import watermarks
from consentgate.settings import Settings
from tests.integration.faults import audit
from tests.integration.router_harness import MASTER_KEY, RouterEnv, wait_for

pytestmark = pytest.mark.integration


def records(env: RouterEnv, topic: str) -> list[Message]:
    return [m for m in env.read(topic, timeout=10) if m.value() is not None]


def send(env: RouterEnv, topic: str, key: bytes | None, value: bytes | None, **kw: Any) -> None:
    producer = Producer({"bootstrap.servers": env.bootstrap})
    producer.produce(topic, value, key, **kw)
    assert producer.flush(30) == 0


def forged(env: RouterEnv, template: Message, recipient: str, event_id: str, subject: str) -> bytes:
    """``template`` (a real partner record) rewritten for another event and subject, with the
    scoped event id and the pseudonym a real router would give them: only consent is missing."""
    value = env.serde.decode(template.value()).value
    scoped = env.keys.scoped_event_id(recipient, event_id)
    value["event_id"] = scoped
    value["evidence"]["event_id"] = scoped
    value["subject_key"] = env.keys.pseudonym(recipient, subject)
    value["recipient"] = recipient
    name = env.serde.decode(template.value()).name
    return env.serde.encode(value, name.rsplit(".", 1)[-1])


@pytest.fixture
def clean(router_env: RouterEnv) -> Iterator[RouterEnv]:
    """A clean run: ann shares with client-01 and then withdraws (retraction written), bob
    has analytics only, cyd has no consent at all."""
    env = router_env
    env.consent("ann", "GRANT", "analytics")
    env.consent("ann", "GRANT", "partner_sharing", "client-01")
    env.consent("bob", "GRANT", "analytics")
    env.start_router()
    events = env.browse("ann", 3) + env.browse("bob", 2) + env.browse("cyd", 2)
    env.decisions_by_event(len(events))
    env.consent("ann", "WITHDRAW", "partner_sharing", "client-01")
    wait_for(lambda: env.retractions(env.plan.partner_topic("client-01")), timeout=60)
    later = env.browse("ann", 1)
    env.decisions_by_event(len(events) + len(later))
    yield env


def test_clean_run_passes(clean: RouterEnv) -> None:
    report = audit(clean)
    assert report.ok, report.render()
    assert report.read["raw_records"] == 8
    assert report.read["decisions"] == 8
    sinks = report.sinks
    assert sinks[clean.plan.partner_topic("client-01")].records == 3
    assert sinks[clean.plan.partner_topic("client-01")].retractions == 1
    assert sinks[clean.plan.analytics_topic].records == 6
    assert report.read["provisions"] >= 1
    assert report.to_json()["findings"]["leak"] == {"count": 0, "examples": []}
    # the sinks judged in two forked processes: the same report
    forked = audit(clean, workers=2).to_json()
    alone = report.to_json()
    for volatile in ("took_s", "started_at"):
        forked.pop(volatile), alone.pop(volatile)
    assert forked == alone


def test_a_record_written_by_hand_into_a_partner_topic_is_a_leak(clean: RouterEnv) -> None:
    env = clean
    template = records(env, env.plan.partner_topic("client-01"))[0]
    bob_event = env.produced[3]  # bob never shared with anyone
    bad = forged(env, template, "client-02", bob_event, "bob")
    send(
        env,
        env.plan.partner_topic("client-02"),
        env.keys.pseudonym("client-02", "bob").encode(),
        bad,
    )
    report = audit(env)
    assert not report.ok
    assert report.counts["leak"] == 1
    assert report.counts["decision_mismatch"] == 1  # the decision log says denied
    (leak,) = report.examples["leak"]
    assert leak["subject"] == "bob"
    assert leak["sink"] == env.plan.partner_topic("client-02")


def test_a_record_after_its_subjects_retraction_is_found(clean: RouterEnv) -> None:
    env = clean
    topic = env.plan.partner_topic("client-01")
    first = records(env, topic)[0]  # ann's, decided before her withdrawal
    send(env, topic, first.key(), first.value(), partition=first.partition())
    report = audit(env)
    assert report.counts["after_retraction"] == 1
    assert report.counts["duplicate"] == 1


def test_a_missing_provision_is_found(clean: RouterEnv) -> None:
    env = clean
    empty = env.provisions + ".empty"
    futures = env.admin.create_topics([NewTopic(empty, num_partitions=env.partitions)])
    for f in futures.values():
        f.result(timeout=30)
    try:
        report = audit(env, provisions=empty)
    finally:
        env.admin.delete_topics([empty])
    # ann's three partner records: one subject, one sink, one day, three deliveries unledgered
    assert report.counts["delivery_without_provision"] == 3
    assert {e["subject"] for e in report.examples["delivery_without_provision"]} == {"ann"}


def test_evidence_pointing_at_another_raw_event_is_found(clean: RouterEnv) -> None:
    env = clean
    topic = env.plan.analytics_topic
    real = records(env, topic)[0]
    value = env.serde.decode(real.value()).value
    value["evidence"]["source_offset"] = value["evidence"]["source_offset"] + 1
    send(env, topic, real.key(), env.serde.encode(value, "BrowsingSinkRecord"))
    report = audit(env)
    assert report.counts["evidence_mismatch"] >= 1
    assert not report.ok


def test_a_leak_hidden_past_the_raw_topics_start_is_unjudgeable(clean: RouterEnv) -> None:
    """The first audit read from offset 0: after deleteRecords it read nothing and passed."""
    env = clean
    template = records(env, env.plan.partner_topic("client-01"))[0]
    cyd_event = env.produced[5]  # cyd has no consent record at all
    bad = forged(env, template, "client-02", cyd_event, "cyd")
    send(env, env.plan.partner_topic("client-02"), b"x", bad)
    highs = watermarks(Settings().kafka_config(env.bootstrap), env.plan.browsing_topic)
    gone = [TopicPartition(env.plan.browsing_topic, p, high) for p, (_, high) in highs.items()]
    for f in env.admin.delete_records(gone).values():
        f.result(timeout=30)
    report = audit(env)
    assert not report.ok
    assert report.counts["unjudgeable"] >= 1
    assert report.read["raw_records"] == 0


def test_a_record_in_a_sink_of_a_previous_policy_is_judged(clean: RouterEnv) -> None:
    env = clean
    legacy = env.plan.partner_topic("client-02") + ".legacy"
    for f in env.admin.create_topics([NewTopic(legacy, num_partitions=env.partitions)]).values():
        f.result(timeout=30)
    try:
        doc = yaml.safe_load(env.policy_path.read_text())
        old = next(s for s in doc["sinks"] if s.get("recipient") == "client-02")
        doc["sinks"].append({**old, "name": "partner.client-02.legacy", "topic": legacy})
        past = env.workdir / "policy-old.yaml"
        past.write_text(yaml.safe_dump(doc))
        template = records(env, env.plan.partner_topic("client-01"))[0]
        bad = forged(env, template, "client-02", env.produced[3], "bob")
        send(env, legacy, b"k", bad)
        assert audit(env).ok  # the current policy alone does not know the topic
        report = audit(env, past=(past,), workers=2)
        assert report.counts["leak"] == 1
        assert not report.sinks[legacy].declared
    finally:
        env.admin.delete_topics([legacy])


def test_audit_command_exit_codes_json_and_html(clean: RouterEnv, tmp_path: Path) -> None:
    env = clean
    base = [sys.executable, "-m", "consentgate", "audit", "--policy", str(env.policy_path)]
    base += ["--changes-topic", env.changes, "--decisions-topic", env.decisions]
    base += ["--provisions-topic", env.provisions, "--dlq-topic", env.dlq, "--settle", "0"]
    envvars = {
        **os.environ,
        "CONSENTGATE_BOOTSTRAP": env.bootstrap,
        "CONSENTGATE_PSEUDONYM_MASTER_KEY": MASTER_KEY,
    }
    html = tmp_path / "audit.html"
    ok = subprocess.run(
        [*base, "--json", "--html", str(html)],
        env=envvars,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr.decode()
    data = json.loads(ok.stdout)
    assert data["verdict"] == "PASS"
    assert "PASS" in html.read_text()
    template = records(env, env.plan.partner_topic("client-01"))[0]
    bad = forged(env, template, "client-02", env.produced[3], "bob")
    send(env, env.plan.partner_topic("client-02"), b"k", bad)
    failed = subprocess.run(base, env=envvars, capture_output=True, timeout=300, check=False)
    assert failed.returncode == 1, failed.stderr.decode()
    assert "RESULT: FAIL" in failed.stdout.decode()
