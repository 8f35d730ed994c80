"""The sink consumer client and ``consentgate consume`` on the real broker, over a real router
run.

One sink for the module: dana shares with client-01, the router delivers 3 browsing events
to ``partner.client-01.browsing``; then the same record is written again (a re-delivery, as
a replay or a copying pipeline does), a record is written in a transaction that is aborted
(it never happened), and dana withdraws: the router writes the retraction. In partition
order the sink holds: r1 r2 r3 r1' (aborted) RETRACT.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from consentgate.client import Retraction, SinkConsumer, SinkMessage
from consentgate.models.consent import ConsentChange
from consentgate.models.sinks import BrowsingSinkRecord
from consentgate.policy import load_policy
from consentgate_dev.demo.policygen import PolicyPlan
from tests.integration.router_harness import RouterEnv, wait_for

pytestmark = pytest.mark.integration


@dataclass
class Sink:
    env: RouterEnv
    topic: str
    partition: int
    delivered: list[Message]  # r1 r2 r3 as the router wrote them
    copy_offset: int  # of r1'
    event_ids: list[str]
    aborted_event_id: str
    withdrawal: ConsentChange
    retraction: Message
    policy_version: str

    @property
    def kafka(self) -> dict[str, Any]:
        return {"bootstrap.servers": self.env.bootstrap}

    def event_id(self, msg: Message) -> str:
        return str(self.env.serde.decode(msg.value()).value["evidence"]["event_id"])


def _records(env: RouterEnv, topic: str, n: int) -> Callable[[], list[Message]]:
    def fetch() -> list[Message]:
        got = [m for m in env.read(topic, timeout=10) if m.value() is not None]
        return got if len(got) >= n else []

    return fetch


@pytest.fixture(scope="module")
def sink(
    kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sink]:
    plan = PolicyPlan(partners=["client-01"], score_partners=[], suffix=f".k{uuid.uuid4().hex[:8]}")
    env = RouterEnv(kafka_bootstrap, kafka_admin, tmp_path_factory.mktemp("client"), plan)
    topic = plan.partner_topic("client-01")
    try:
        env.start_fold()
        env.consents.consent("dana", "GRANT", "partner_sharing", "client-01")
        env.start_router()
        env.browse("dana", 3)
        delivered = wait_for(_records(env, topic, 3), timeout=60)
        assert len(delivered) == 3
        first = delivered[0]
        partition = first.partition()
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        copies: list[Message] = []
        producer.produce(
            topic,
            first.value(),
            first.key(),
            partition,
            headers=first.headers(),
            on_delivery=lambda _err, msg: copies.append(msg),
        )
        assert producer.flush(30) == 0
        # a record of an aborted transaction: a read_uncommitted consumer would see it
        model = env.serde.decode_model(delivered[1].value(), BrowsingSinkRecord)
        aborted_id = uuid.uuid4()
        ghost = model.model_copy(
            update={
                "event_id": aborted_id,
                "evidence": model.evidence.model_copy(update={"event_id": aborted_id}),
            }
        )
        txn = Producer(
            {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"ghost-{plan.suffix}"}
        )
        txn.init_transactions(30)
        txn.begin_transaction()
        txn.produce(topic, env.serde.encode(ghost), first.key(), partition)
        txn.flush(30)
        txn.abort_transaction(30)
        withdrawal = env.consents.consent("dana", "WITHDRAW", "partner_sharing", "client-01")

        def retraction() -> list[Message]:
            return [m for m in env.read(topic, timeout=10) if m.value() is None]

        (retracted,) = wait_for(retraction, timeout=60)
        sink = Sink(
            env,
            topic,
            partition,
            delivered,
            copies[0].offset(),
            [],
            str(aborted_id),
            withdrawal,
            retracted,
            load_policy(env.policy_path).version,
        )
        sink.event_ids = [sink.event_id(m) for m in delivered]
        yield sink
    finally:
        env.stop_all()
        env.delete_topics()


def _drain(consumer: SinkConsumer, until: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "the sink consumer did not get there in time"
        consumer.poll(0.5)


def _committed(sink: Sink, group: str) -> int:
    probe = Consumer({"bootstrap.servers": sink.env.bootstrap, "group.id": group})
    try:
        (tp,) = probe.committed([TopicPartition(sink.topic, sink.partition)], timeout=30)
        return int(tp.offset)
    finally:
        probe.close()


def test_client_decodes_drops_the_redelivery_and_reports_the_retraction(sink: Sink) -> None:
    records: list[SinkMessage] = []
    duplicates: list[SinkMessage] = []
    retractions: list[Retraction] = []
    group = f"client-{uuid.uuid4().hex[:8]}"
    with SinkConsumer(
        sink.topic,
        group,
        config=sink.kafka,
        on_record=records.append,
        on_retraction=retractions.append,
        on_duplicate=duplicates.append,
    ) as consumer:
        _drain(consumer, lambda: bool(retractions))
        assert (consumer.records, consumer.duplicates, consumer.retractions) == (3, 1, 1)
    assert [m.event_id for m in records] == sink.event_ids  # not the aborted one
    assert all(isinstance(m.record, BrowsingSinkRecord) for m in records)
    assert [m.event_id for m in duplicates] == sink.event_ids[:1]
    (retraction,) = retractions
    assert retraction.key == sink.delivered[0].key().decode() == records[0].key
    assert retraction.reason == "withdrawn"
    assert retraction.change_id == sink.withdrawal.change_id
    assert retraction.purpose == "partner_sharing"
    assert retraction.policy_version == sink.policy_version
    assert retraction.offset == sink.retraction.offset()
    assert _committed(sink, group) == sink.retraction.offset() + 1


def test_offsets_are_committed_only_after_the_callbacks_returned(sink: Sink) -> None:
    second = sink.event_ids[1]
    failed: list[str] = []

    def fail_once(msg: SinkMessage) -> None:
        if msg.event_id == second and not failed:
            failed.append(msg.event_id)
            raise RuntimeError("the store is down")
        seen.append(msg.event_id)

    # a consumer whose callback fails on r2 stops there: r1 committed, r2 not
    seen: list[str] = []
    group = f"client-{uuid.uuid4().hex[:8]}"
    gone: list[Retraction] = []
    a = SinkConsumer(
        sink.topic, group, config=sink.kafka, on_record=fail_once, on_retraction=gone.append
    )
    with a, pytest.raises(RuntimeError):
        _drain(a, lambda: False)
    assert seen == sink.event_ids[:1]
    assert _committed(sink, group) == sink.delivered[1].offset()

    # the group's next consumer starts at r2; its memory is its own, so r1' is new to it
    seen.clear()
    with SinkConsumer(
        sink.topic, group, config=sink.kafka, on_record=fail_once, on_retraction=gone.append
    ) as b:
        _drain(b, lambda: bool(gone))
    assert seen == [*sink.event_ids[1:], sink.event_ids[0]]

    # in one consumer, the record whose callback raised is delivered again by the next poll
    failed.clear()
    seen.clear()
    gone.clear()
    other = f"client-{uuid.uuid4().hex[:8]}"
    with SinkConsumer(
        sink.topic, other, config=sink.kafka, on_record=fail_once, on_retraction=gone.append
    ) as c:
        with pytest.raises(RuntimeError):
            _drain(c, lambda: False)
        _drain(c, lambda: bool(gone))
        assert c.duplicates == 1
    assert seen == sink.event_ids


def _consume(sink: Sink, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CONSENTGATE_BOOTSTRAP": sink.env.bootstrap}
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "consentgate", "consume", "partner.client-01.browsing"),
            *("--policy", str(sink.env.policy_path), *args),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_consume_prints_records_and_a_retraction_marker_and_stops_on_ctrl_c(sink: Sink) -> None:
    proc = _consume(sink, "--from-beginning")
    lines: list[str] = []
    marker = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("RETRACT "):
                marker.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert marker.wait(120), lines
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    key = sink.delivered[0].key().decode()
    records = [line for line in lines if line.startswith(f"{sink.topic}[")]
    assert [line.split(" event=")[1].split()[0] for line in records] == sink.event_ids
    assert all(f" key={key} " in line for line in records)
    assert [line for line in lines if line.startswith("DUPLICATE ")] == [
        f"DUPLICATE event={sink.event_ids[0]} key={key} "
        f"at={sink.topic}[{sink.partition}]@{sink.copy_offset} (dropped)"
    ]
    (retract,) = [line for line in lines if line.startswith("RETRACT ")]
    assert retract.startswith(
        f"RETRACT key={key} reason=withdrawn change={sink.withdrawal.change_id} "
        "purpose=partner_sharing"
    )
    assert sink.aborted_event_id not in "\n".join(lines)


def test_consume_json_max_and_group_resume(sink: Sink) -> None:
    group = f"consume-{uuid.uuid4().hex[:8]}"
    first = _consume(sink, "--from-beginning", "--json", "--max", "2", "--group", group)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    second = _consume(sink, "--json", "--max", "3", "--group", group)
    more, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    docs = [json.loads(line) for line in (out + more).splitlines()]
    # the second run resumed at r3; r1' is new to its memory (which lives one process)
    assert [d["type"] for d in docs] == ["record", "record", "record", "record", "retraction"]
    assert [d["event_id"] for d in docs[:4]] == [*sink.event_ids, sink.event_ids[0]]
    assert [d["offset"] for d in docs[:2]] == [m.offset() for m in sink.delivered[:2]]
    assert docs[0]["record"]["purpose"] == "partner_sharing"
    assert docs[4]["change_id"] == sink.withdrawal.change_id
    assert docs[4]["reason"] == "withdrawn"
