"""Smoke tests of the building blocks the router needs, on a real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Consumer, Producer

from consentgate.settings import Settings
from tests.conftest import TopicFactory
from tests.kafka_helpers import consume_all, produce

pytestmark = pytest.mark.integration

KEYS = [f"subject-{i}".encode() for i in range(10_000)]


async def _aiokafka_partitions(bootstrap: str, topic: str) -> dict[bytes, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k, value=b"x") for k in KEYS]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {k: m.partition for k, m in zip(KEYS, metas, strict=True)}


def test_confluent_and_aiokafka_agree_on_partitions(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """(a) the project's confluent-kafka producer partitions like faust/aiokafka (murmur2)."""
    ours, theirs = topic_factory(partitions=12), topic_factory(partitions=12)
    produce(kafka_bootstrap, ours, ((k, b"x") for k in KEYS))
    by_confluent = {
        m.key(): m.partition() for m in consume_all(kafka_bootstrap, ours, expected=len(KEYS))
    }
    by_aiokafka = asyncio.run(_aiokafka_partitions(kafka_bootstrap, theirs))
    assert len(by_confluent) == len(KEYS)
    disagree = [k for k in KEYS if by_confluent[k] != by_aiokafka[k]]
    assert disagree == []
    assert len(set(by_confluent.values())) == 12  # every partition used


def test_librdkafka_default_partitioner_would_disagree(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """The trap the setting avoids: without murmur2 most keys land elsewhere."""
    topic = topic_factory(partitions=12)
    produce(
        kafka_bootstrap, topic, ((k, b"x") for k in KEYS[:1000]), partitioner="consistent_random"
    )
    crc = {m.key(): m.partition() for m in consume_all(kafka_bootstrap, topic, expected=1000)}
    murmur = asyncio.run(_aiokafka_partitions(kafka_bootstrap, topic_factory(partitions=12)))
    agree = sum(crc[k] == murmur[k] for k in KEYS[:1000])
    assert agree < 200


COMPACT = {
    "cleanup.policy": "compact",
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",
}


def test_compacted_topic_keeps_last_value_and_drops_tombstones(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """(b) compaction really runs: last value per key survives, a tombstone removes its key."""
    topic = topic_factory(partitions=1, config=COMPACT)
    keys = [f"k{i}".encode() for i in range(20)]
    for version in range(5):
        produce(kafka_bootstrap, topic, ((k, f"v{version}".encode()) for k in keys))
        time.sleep(0.15)
    produce(kafka_bootstrap, topic, [(b"k0", None)])  # tombstone
    deadline = time.monotonic() + 90
    filler = 0
    while time.monotonic() < deadline:
        time.sleep(1.0)
        filler += 1  # appends roll the active segment so it can be cleaned
        produce(kafka_bootstrap, topic, [(f"filler-{filler}".encode(), b"f")])
        records = [
            m
            for m in consume_all(kafka_bootstrap, topic, timeout=10)
            if not m.key().startswith(b"filler")
        ]
        per_key: dict[bytes, list[bytes | None]] = {}
        for m in records:
            per_key.setdefault(m.key(), []).append(m.value())
        compacted = all(per_key.get(k) == [b"v4"] for k in keys[1:])
        if compacted and b"k0" not in per_key:
            return
    pytest.fail(f"not compacted within 90 s: {per_key}")


def test_faust_worker_subprocess_copies_topic(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    """(c) a faust-streaming worker, run as its own process, consumes and produces."""
    source, sink = topic_factory(partitions=2), topic_factory(partitions=2)
    produce(kafka_bootstrap, source, ((f"k{i}".encode(), f"v{i}".encode()) for i in range(200)))
    env = {
        **os.environ,
        "APP_ID": f"smoke-{uuid.uuid4().hex[:8]}",
        "BOOTSTRAP": kafka_bootstrap,
        "IN_TOPIC": source,
        "OUT_TOPIC": sink,
        "PARTITIONS": "2",
        "DATADIR": str(tmp_path / "faust"),
        "PYTHONPATH": str(Path(__file__).parent / "apps"),
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faust",
            "-A",
            "passthrough_app",
            "worker",
            "-l",
            "info",
            "--without-web",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        out = consume_all(kafka_bootstrap, sink, expected=200, timeout=90)
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
    got = sorted((m.key(), m.value()) for m in out)
    want = sorted((f"k{i}".encode(), f"v{i}".encode()) for i in range(200))
    assert got == want, (tmp_path / "worker.log").read_text()[-3000:]


def test_transactions_on_single_node(kafka_bootstrap: str, topic_factory: TopicFactory) -> None:
    """(d) committed transactions are visible to read_committed readers, aborted ones not."""
    topic = topic_factory(partitions=1)
    producer = Producer(
        Settings().producer_config(
            kafka_bootstrap, **{"transactional.id": f"tx-{uuid.uuid4().hex[:8]}"}
        )
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"a", value=b"committed")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"b", value=b"aborted")
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"c", value=b"committed-too")
    producer.commit_transaction(30)
    committed = consume_all(kafka_bootstrap, topic, isolation="read_committed", timeout=20)
    assert [m.value() for m in committed] == [b"committed", b"committed-too"]
    everything = consume_all(kafka_bootstrap, topic, isolation="read_uncommitted", timeout=20)
    assert b"aborted" in [m.value() for m in everything]


def test_cluster_kind_is_reported(kafka_bootstrap: str) -> None:
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "probe"})
    try:
        meta = consumer.list_topics(timeout=10)
    finally:
        consumer.close()
    assert meta.brokers
