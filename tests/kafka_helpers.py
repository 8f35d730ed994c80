"""Small helpers for integration tests: produce a batch, read a topic to its end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from consentgate.settings import Settings


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None]],
    **extra: object,
) -> int:
    """Produce (key, value) pairs with the project's producer settings; returns the count."""
    producer = Producer(Settings().producer_config(bootstrap, **extra))
    errors: list[KafkaError] = []

    def on_ack(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_ack)
                break
            except BufferError:  # the local queue is full (100,000 records): let it drain
                producer.poll(0.1)
        producer.poll(0)
        count += 1
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} records not acknowledged"
    assert not errors, errors[:3]
    return count


def consume_all(
    bootstrap: str,
    topic: str,
    *,
    expected: int | None = None,
    timeout: float = 30.0,
    isolation: str = "read_committed",
) -> list[Message]:
    """Read ``topic`` from the beginning until ``expected`` records (or end/timeout)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"cg-read-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    eof: set[int] = set()
    assigned: int | None = None
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if assigned is None and consumer.assignment():
                assigned = len(consumer.assignment())
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(msg.partition())
                    if expected is None and assigned is not None and len(eof) >= assigned:
                        break
                    continue
                raise AssertionError(msg.error())
            out.append(msg)
            eof.discard(msg.partition())
            if expected is not None and len(out) >= expected:
                break
    finally:
        consumer.close()
    return out


def read_at(
    bootstrap: str, topic: str, partition: int, offset: int, timeout: float = 60.0
) -> Message:
    """The record at ``topic[partition]@offset`` (read_committed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"cg-read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            assert msg.offset() == offset, (msg.offset(), offset)
            return msg
        raise AssertionError(f"nothing at {topic}[{partition}]@{offset}")
    finally:
        consumer.close()


def job_view(subject: str, at: datetime | None = None, **fields: Any) -> dict[str, Any]:
    """A BrowsingEvent datum: ``subject`` viewed job-1 of client-01 at ``at`` (default now);
    ``fields`` override or add fields."""
    return {
        "event_id": uuid.uuid4(),
        "subject_id": subject,
        "event_time": at or datetime.now(UTC),
        "event_type": "JOB_VIEW",
        "job_id": "job-1",
        "company_id": "client-01",
        **fields,
    }
