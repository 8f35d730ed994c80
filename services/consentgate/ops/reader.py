"""Read whole topics, partition by partition, from the beginning to the current end.

No consumer group is joined and nothing is committed: what operators' tools (audit, replay,
reports) need to see a topic as it is now. "The beginning" is each partition's low watermark:
once retention or ``delete_records`` has removed a partition's head, offset 0 is out of range
and librdkafka's reset would jump to the end, so a read from 0 silently returned nothing.
``partitions`` limits the read to some partitions (a subject-keyed topic: the subject's one).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from consentgate.errors import ConsentgateError

__all__ = ["read_topic", "watermarks"]


def read_topic(
    kafka_config: dict[str, Any],
    topic: str,
    *,
    timeout: float = 30.0,
    progress: Callable[[int], None] | None = None,
    partitions: Iterable[int] | None = None,
    since: datetime | None = None,
) -> Iterator[Message]:
    """Every committed record of ``topic`` present now (of ``partitions`` only, if given),
    partition by partition in offset order (read_committed: records of aborted transactions
    are skipped), from each partition's low watermark (``since``: from each partition's first
    record with a timestamp at or after it)."""
    consumer = Consumer(
        {
            **kafka_config,
            "group.id": f"consentgate-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.max.bytes": 52428800,
            # the read ends at each partition's EOF: a broker holding the last, empty fetch
            # for the default 500 ms cost every topic read half a second or more (42 sinks:
            # most of an audit's wall time)
            "fetch.wait.max.ms": 10,
            # the router writes in transactions: an aborted record never happened
            "isolation.level": "read_committed",
            # the head may be deleted while we read: go on from the new start, not the end
            "auto.offset.reset": "earliest",
        }
    )
    try:
        marks = _marks(consumer, topic, timeout, partitions)
        if since is not None:
            marks = _since(consumer, topic, marks, since, timeout)
        starts = {p: low for p, (low, high) in marks.items() if high > low}
        ends = {p: marks[p][1] for p in starts}
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
        todo = set(ends)
        count = 0
        while todo:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            err = msg.error()
            partition = msg.partition() or 0
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    todo.discard(partition)
                    continue
                raise ConsentgateError(f"reading {topic}: {err}")
            if partition not in todo:
                continue
            yield msg
            count += 1
            if progress is not None and count % 50_000 == 0:
                progress(count)
            if (msg.offset() or 0) + 1 >= ends[partition]:
                todo.discard(partition)
    finally:
        consumer.close()


def watermarks(
    kafka_config: dict[str, Any], topic: str, *, timeout: float = 30.0
) -> dict[int, tuple[int, int]]:
    """Partition -> (low, high) watermark of ``topic`` now (ConsentgateError if it is absent).
    A low watermark above 0 means the partition's head was removed (retention, deleteRecords)."""
    consumer = Consumer({**kafka_config, "group.id": f"consentgate-marks-{uuid.uuid4().hex[:8]}"})
    try:
        return _marks(consumer, topic, timeout, None)
    finally:
        consumer.close()


def _since(
    consumer: Consumer,
    topic: str,
    marks: dict[int, tuple[int, int]],
    since: datetime,
    timeout: float,
) -> dict[int, tuple[int, int]]:
    """``marks`` with each low watermark moved to the first offset at or after ``since``."""
    ms = int(since.timestamp() * 1000)
    found = consumer.offsets_for_times(
        [TopicPartition(topic, p, ms) for p in marks], timeout=timeout
    )
    out = {}
    for tp in found:
        low, high = marks[tp.partition]
        start = high if tp.offset < 0 else max(low, tp.offset)  # -1: no record that late
        out[tp.partition] = (start, high)
    return out


def _marks(
    consumer: Consumer, topic: str, timeout: float, partitions: Iterable[int] | None
) -> dict[int, tuple[int, int]]:
    """(low, high) of each partition of ``topic`` (of ``partitions``, if given)."""
    meta = consumer.list_topics(topic, timeout=timeout)
    found = meta.topics.get(topic)
    if found is None or found.error is not None:
        why = "it does not exist" if found is None else str(found.error)
        raise ConsentgateError(f"cannot read topic {topic}: {why}")
    present = set(found.partitions)
    wanted = present if partitions is None else set(partitions)
    if not wanted <= present:
        raise ConsentgateError(f"topic {topic} has no partition {sorted(wanted - present)}")
    out = {}
    for p in sorted(wanted):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        out[p] = (int(low or 0), int(high or 0))
    return out
