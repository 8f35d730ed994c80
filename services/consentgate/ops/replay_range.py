"""Which offsets of the source topic a replay covers: ``--from`` / ``--to`` per partition.

A position is ``earliest`` (the low watermark: the oldest retained record), ``latest`` (the
end, read_committed: the last stable offset), an integer offset (the same for every
partition, clamped to what is retained) or an ISO-8601 time with a zone (the first record
whose Kafka timestamp is at or after it: ``offsets_for_times``; none = the end). The range
of a partition is ``[start, end)``: ``--to`` is exclusive, and defaults to the end as
observed when the replay starts, so records produced while it runs are not part of it.

``parse_position`` and ``clamp`` are pure; ``resolve_ranges`` asks the broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from confluent_kafka import Consumer, TopicPartition

from consentgate.errors import ConfigError

__all__ = ["PartitionRange", "Position", "clamp", "parse_position", "resolve_ranges"]

PositionKind = Literal["earliest", "latest", "offset", "time"]


@dataclass(frozen=True, slots=True)
class Position:
    kind: PositionKind
    offset: int | None = None
    time: datetime | None = None

    @property
    def text(self) -> str:
        """Canonical text (stable: part of the replay's default id)."""
        if self.kind == "offset":
            return str(self.offset)
        if self.kind == "time" and self.time is not None:
            return self.time.isoformat()
        return self.kind


@dataclass(frozen=True, slots=True)
class PartitionRange:
    partition: int
    start: int
    end: int  # exclusive

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def parse_position(text: str, option: str = "--from") -> Position:
    """``earliest`` | ``latest`` | an offset | an ISO-8601 time with zone; ConfigError if not."""
    value = text.strip()
    lowered = value.lower()
    if lowered in {"earliest", "beginning"}:
        return Position("earliest")
    if lowered in {"latest", "end"}:
        return Position("latest")
    if value.isdigit():
        return Position("offset", offset=int(value))
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{option} {text!r}: expected earliest, latest, an offset (0, 1234) or an ISO-8601 "
            "time with a zone (2026-12-01T09:00:00Z, 2026-12-01T18:00+09:00)"
        ) from None
    if parsed.tzinfo is None:
        raise ConfigError(f"{option} {text!r}: a time needs a zone (add Z or +09:00)")
    return Position("time", time=parsed)


def clamp(position: Position, low: int, high: int, by_time: int | None = None) -> int:
    """The offset ``position`` means in a partition holding ``[low, high)``; ``by_time`` is
    what offsets_for_times answered for a time position (negative: no record at or after)."""
    if position.kind == "earliest":
        return low
    if position.kind == "latest":
        return high
    if position.kind == "offset":
        return min(max(position.offset or 0, low), high)
    if by_time is None or by_time < 0:
        return high
    return min(max(by_time, low), high)


def resolve_ranges(
    consumer: Consumer,
    topic: str,
    start: Position,
    end: Position | None,
    *,
    timeout: float = 30.0,
) -> dict[int, PartitionRange]:
    """Every partition's ``[start, end)`` now (``end`` None = the end now). ConfigError if the
    topic does not exist; KafkaException if the broker does not answer."""
    meta = consumer.list_topics(topic, timeout=timeout)
    found = meta.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise ConfigError(f"source topic {topic} does not exist")
    partitions = sorted(found.partitions)
    marks: dict[int, tuple[int, int]] = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        marks[p] = (int(low or 0), int(high or 0))
    starts = _offsets(consumer, topic, start, marks, timeout)
    ends = _offsets(consumer, topic, end or Position("latest"), marks, timeout)
    return {p: PartitionRange(p, starts[p], max(starts[p], ends[p])) for p in partitions}


def _offsets(
    consumer: Consumer,
    topic: str,
    position: Position,
    marks: Mapping[int, tuple[int, int]],
    timeout: float,
) -> dict[int, int]:
    by_time: dict[int, int] = {}
    if position.kind == "time" and position.time is not None:
        ms = int(position.time.timestamp() * 1000)
        asked: Any = [TopicPartition(topic, p, ms) for p in marks]
        for tp in consumer.offsets_for_times(asked, timeout=timeout):
            by_time[tp.partition] = tp.offset
    return {p: clamp(position, low, high, by_time.get(p)) for p, (low, high) in marks.items()}
