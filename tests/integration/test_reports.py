"""Subject and recipient reports on the real broker, checked against the topics read
independently (every partition, read_committed) after a real router run.

One scenario for the module (a router run is the slow part): alice grants analytics,
profiling and partner sharing with client-01, browses 3 times and gets a score; bob shares
with client-02; carol has no consent; then alice withdraws client-01 (the router retracts
from client-01's browsing and score sinks) and browses once more.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from consentgate.models.consent import ConsentChange
from consentgate.models.records import DecisionRecord, ProvisionRecord
from consentgate.ops.reader import read_topic
from consentgate.ops.report import ReportTopics, recipient_report, subject_report
from consentgate.ops.report_format import render_json
from consentgate.policy import Policy, PseudonymKeys, load_policy
from consentgate.router.partitioner import partition_for
from consentgate_dev.demo.policygen import PolicyPlan
from tests.conftest import TopicFactory
from tests.integration.router_harness import MASTER_KEY, RouterEnv, wait_for

pytestmark = pytest.mark.integration

NOTICE = "notice-2025-04"


@dataclass
class Scenario:
    env: RouterEnv
    policy: Policy
    topics: ReportTopics
    kafka: dict[str, Any]
    withdrawal: ConsentChange
    alice_events: list[str]

    def all(self, topic: str) -> list[Any]:
        return self.env.read(topic, timeout=15)

    def decoded(self, topic: str, model: type[Any]) -> list[Any]:
        return [self.env.serde.decode_model(m.value(), model) for m in self.all(topic)]

    def sink_keys(self, topic: str) -> set[bytes]:
        return {m.key() for m in self.all(topic) if m.value() is not None}


@pytest.fixture(scope="module")
def scenario(
    kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    plan = PolicyPlan(
        partners=["client-01", "client-02"],
        score_partners=["client-01"],
        suffix=f".r{uuid.uuid4().hex[:8]}",
    )
    env = RouterEnv(kafka_bootstrap, kafka_admin, tmp_path_factory.mktemp("reports"), plan)
    try:
        env.start_fold()
        for purpose, recipient in (
            ("analytics", None),
            ("profiling", None),
            ("partner_sharing", "client-01"),
        ):
            env.consents.consent("alice", "GRANT", purpose, recipient, notice_version=NOTICE)
        env.consents.consent("bob", "GRANT", "partner_sharing", "client-02")
        env.start_router()
        alice = env.browse("alice", 3)
        alice.append(env.score("alice"))
        env.browse("bob", 2)
        env.browse("carol")
        env.decisions_by_event(7)
        withdrawal = env.consents.consent("alice", "WITHDRAW", "partner_sharing", "client-01")
        for topic in (plan.partner_topic("client-01"), plan.partner_topic("client-01", "scores")):
            wait_for(lambda t=topic: env.retractions(t), timeout=60)
        alice += env.browse("alice")
        env.decisions_by_event(8)
        yield Scenario(
            env,
            load_policy(env.policy_path),
            ReportTopics(env.changes, env.state, env.decisions, env.provisions),
            {"bootstrap.servers": kafka_bootstrap},
            withdrawal,
            alice,
        )
    finally:
        env.stop_all()
        env.delete_topics()


def _keys() -> PseudonymKeys:
    return PseudonymKeys(master_key=pydantic.SecretStr(MASTER_KEY))


def _report_cli(s: Scenario, *args: str, keys: bool = True) -> str:
    env = {**os.environ, "CONSENTGATE_BOOTSTRAP": s.env.bootstrap}
    env.pop("CONSENTGATE_PSEUDONYM_MASTER_KEY", None)
    env.pop("CONSENTGATE_PSEUDONYM_KEYS", None)
    if keys:
        env["CONSENTGATE_PSEUDONYM_MASTER_KEY"] = MASTER_KEY
    t = s.topics
    done = subprocess.run(
        [
            *(sys.executable, "-m", "consentgate", "report", *args),
            *("--policy", str(s.env.policy_path)),
            *("--changes-topic", t.changes, "--state-topic", t.state),
            *("--decisions-topic", t.decisions, "--provisions-topic", t.provisions),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_subject_report_matches_the_topics(scenario: Scenario) -> None:
    s = scenario
    report = subject_report(s.kafka, s.policy, s.env.serde, "alice", topics=s.topics, keys=_keys())

    # consent history: every change of alice's in the log, none of bob's
    logged = [c for c in s.decoded(s.topics.changes, ConsentChange) if c.subject_id == "alice"]
    rows = report.section("consent_changes").rows
    assert [r["change_id"] for r in rows] == [
        c.change_id for c in sorted(logged, key=lambda c: c.order_key)
    ]
    assert [r["action"] for r in rows] == ["GRANT", "GRANT", "GRANT", "WITHDRAW"]
    assert {r["notice_version"] for r in rows[:3]} == {NOTICE}

    # current state: client-01 withdrawn by that change, the first-party grants in force
    state = {(r["purpose"], r["recipient"]): r for r in report.section("current_state").rows}
    assert state[("partner_sharing", "client-01")]["status"] == "withdrawn"
    assert state[("partner_sharing", "client-01")]["change_id"] == s.withdrawal.change_id
    assert state[("analytics", None)]["status"] == "granted"
    assert state[("profiling", None)]["status"] == "granted"

    # provisions: exactly alice's records of the ledger, with the key client-01 got
    ledger = [r for r in s.decoded(s.topics.provisions, ProvisionRecord) if r.subject_id == "alice"]
    provisions = report.section("provisions").rows
    assert sorted(r["provision_id"] for r in provisions) == sorted(r.provision_id for r in ledger)
    assert {r["sink"] for r in provisions} == {
        "partner.client-01.browsing",
        "partner.client-01.scores",
    }
    browsing_topic = s.env.plan.partner_topic("client-01")
    delivered_keys = s.sink_keys(browsing_topic)
    assert {r["subject_key"].encode() for r in provisions} == delivered_keys
    browsing = next(r for r in provisions if r["sink"] == "partner.client-01.browsing")
    assert browsing["data_items"] == s.policy.sink("partner.client-01.browsing").fields
    assert browsing["consent_notice_version"] == NOTICE

    # retractions: one per client-01 sink, under the key the sink knows alice by
    retractions = report.section("retractions").rows
    assert sorted(r["sink"] for r in retractions) == [
        "partner.client-01.browsing",
        "partner.client-01.scores",
    ]
    independent = s.env.retractions(browsing_topic)
    assert {r["key"].encode() for r in retractions if r["sink"].endswith("browsing")} == {
        k for k, _ in independent
    }
    for r in retractions:
        assert (r["reason"], r["change_id"], r["matched_by"]) == (
            "withdrawn",
            s.withdrawal.change_id,
            "key",
        )

    # decisions: allowed / denied per sink over alice's events, as the topic has them
    counted: Counter[tuple[str, bool]] = Counter()
    for d in s.decoded(s.topics.decisions, DecisionRecord):
        if d.subject_id == "alice":
            counted.update((o.sink, o.allowed) for o in d.outcomes)
    for row in report.section("decisions").rows:
        assert row["allowed"] == counted[(row["sink"], True)], row
        assert row["denied"] == counted[(row["sink"], False)], row
    decided = {row["sink"]: row for row in report.section("decisions").rows}
    assert decided["partner.client-01.browsing"]["allowed"] == 3
    assert decided["partner.client-01.browsing"]["denied"] == 1
    assert decided["analytics"]["allowed"] == 4
    assert report.totals["events_decided"] == len(s.alice_events)

    # only the partitions that can hold alice were read where the topic is keyed by her
    alice = partition_for(b"alice", s.env.partitions)
    for topic in (s.topics.changes, s.topics.state, s.topics.provisions):
        assert report.read[topic] == [alice], topic
    (key,) = delivered_keys
    assert report.read[browsing_topic] == [partition_for(key, s.env.partitions)]
    assert report.read[s.topics.decisions] == list(range(s.env.partitions))  # keyed by event
    assert not report.notes


def test_subject_report_without_pseudonym_keys_finds_the_same_retractions(
    scenario: Scenario,
) -> None:
    """Without the router's keys, a partner sink's key comes from the ledger and the
    analytics sink (no ledger key) is searched whole, by the subject's change ids."""
    s = scenario
    with_keys = subject_report(
        s.kafka, s.policy, s.env.serde, "alice", topics=s.topics, keys=_keys()
    )
    without = subject_report(s.kafka, s.policy, s.env.serde, "alice", topics=s.topics, keys=None)
    assert without.section("retractions").rows == with_keys.section("retractions").rows
    assert without.read[s.env.plan.analytics_topic] == list(range(s.env.partitions))
    assert len(with_keys.read[s.env.plan.analytics_topic]) == 1


def test_subject_report_cli_json_is_stable_and_csv_has_a_header(scenario: Scenario) -> None:
    s = scenario
    as_of = datetime.now(UTC).replace(microsecond=0)
    first = _report_cli(s, "subject", "alice", "--json", "--as-of", as_of.isoformat())
    second = _report_cli(s, "subject", "alice", "--json", "--as-of", as_of.isoformat())
    assert first == second
    in_process = subject_report(
        s.kafka, s.policy, s.env.serde, "alice", topics=s.topics, keys=_keys(), now=as_of
    )
    assert first == render_json(in_process)
    doc = json.loads(first)
    assert doc["report"] == "subject"
    assert len(doc["sections"]["retractions"]) == 2

    table = list(csv.reader(io.StringIO(_report_cli(s, "subject", "alice", "--csv"))))
    header, rows = table[0], table[1:]
    assert header[:3] == ["section", "effective_time", "recorded_time"]
    assert all(len(r) == len(header) for r in rows)
    sections = Counter(r[0] for r in rows)
    assert sections["consent_changes"] == 4
    assert sections["retractions"] == 2

    text = _report_cli(s, "subject", "alice", keys=False)
    assert "Consent history" in text
    assert "Retractions written into sinks: 2" in text
    assert s.withdrawal.change_id in text


def test_recipient_report_is_the_ledger_of_that_recipient(scenario: Scenario) -> None:
    s = scenario
    report = recipient_report(s.kafka, s.policy, s.env.serde, "client-01", topics=s.topics)
    entry = s.policy.recipient("client-01")
    assert (report.about["name"], report.about["address"], report.about["country"]) == (
        entry.name,
        entry.address,
        entry.country,
    )
    ledger = [
        r for r in s.decoded(s.topics.provisions, ProvisionRecord) if r.recipient_id == "client-01"
    ]
    rows = report.section("provisions").rows
    assert sorted(r["provision_id"] for r in rows) == sorted(r.provision_id for r in ledger)
    assert {r["subject_id"] for r in rows} == {"alice"}  # bob shared with client-02 only
    for row in rows:
        record = next(r for r in ledger if r.provision_id == row["provision_id"])
        assert row["subject_key"] == record.subject_key
        assert row["data_items"] == tuple(record.data_items)
        assert row["consent_change_id"] == record.consent_change_id
        assert row["consent_confirmed_at"] == record.consent_confirmed_at
    assert report.totals["provisions"] == len(ledger)
    assert report.totals["subjects"] == 1

    later = max(r.provision_date for r in ledger) + timedelta(days=1)
    empty = recipient_report(
        s.kafka, s.policy, s.env.serde, "client-01", topics=s.topics, since=later
    )
    assert empty.section("provisions").rows == []

    table = list(csv.reader(io.StringIO(_report_cli(s, "recipient", "client-01", "--csv"))))
    assert table[0][:4] == ["section", "provision_date", "subject_id", "subject_key"]
    assert "recipient_address" in table[0]
    assert len(table) == 1 + len(ledger)
    text = _report_cli(s, "recipient", "client-01", "--since", later.isoformat())
    assert entry.address in text
    assert "Provisions" in text
    assert "(none)" in text


def test_read_topic_starts_at_the_low_watermark(
    kafka_bootstrap: str, kafka_admin: AdminClient, topic_factory: TopicFactory
) -> None:
    """After retention (here delete_records) removed a partition's head, offset 0 is out of
    range: reading from 0 reset to the end and returned nothing at all."""
    topic = topic_factory(partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(10):
        producer.produce(topic, value=str(i).encode(), partition=i % 2)
    assert producer.flush(30) == 0
    for future in kafka_admin.delete_records([TopicPartition(topic, 0, 3)]).values():
        future.result(timeout=30)  # partition 0 held 0,2,4,6,8 at offsets 0-4
    conf = {"bootstrap.servers": kafka_bootstrap}
    values = sorted(int(m.value()) for m in read_topic(conf, topic, timeout=30))
    assert values == [1, 3, 5, 6, 7, 8, 9]
    only_0 = [int(m.value()) for m in read_topic(conf, topic, partitions=[0], timeout=30)]
    assert only_0 == [6, 8]
