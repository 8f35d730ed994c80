"""The router's consent view: ``consent.state`` partition N in memory, for each raw
partition N this worker is assigned.

One confluent-kafka consumer, ``assign()`` only (no group, no commits), read_committed: a
record of a consent transaction that is still open or was aborted is not consent. On
assignment of partition N the view reads consent-state partition N from its low watermark up
to the end offset observed just before (``load``; nothing of raw partition N is judged
before); afterwards ``poll`` applies what is new, without blocking. On revocation the
partition is dropped.

Representation: per partition a dict of subject key bytes -> the record's value bytes
(decoded lazily, per event, by the judge) and a set of erased subjects (a tombstone: null
value; remembered until compaction removes it). ``position(p)`` is the consumer's position,
which librdkafka moves past transaction markers, so that it reaches the end offset that
``ListOffsets(read_committed)`` reports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from consentgate.errors import ConsentgateError

__all__ = ["ConsentLookup", "ConsentView", "ViewLoadError"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, int], None]  # partition, position, target


class ViewLoadError(ConsentgateError):
    """A consent partition could not be loaded in time (the worker stops, nothing judged)."""


@dataclass(frozen=True, slots=True)
class ConsentLookup:
    """What the view holds for a subject: present (raw bytes), erased, or missing."""

    state: Literal["present", "erased", "missing"]
    raw: bytes | None = None


MISSING = ConsentLookup("missing")
ERASED = ConsentLookup("erased")


@dataclass(slots=True)
class _Partition:
    records: dict[bytes, bytes] = field(default_factory=dict)
    erased: set[bytes] = field(default_factory=set)
    position: int = 0


class ConsentView:
    """Consent records of the assigned partitions, and how far each has been read."""

    def __init__(self, kafka_config: Mapping[str, Any], topic: str) -> None:
        self.topic = topic
        self._consumer = Consumer(
            {
                **kafka_config,
                "group.id": f"consentgate-view-{topic}",  # required; never used (no commits)
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 10,
                "queued.max.messages.kbytes": 262144,
            }
        )
        self._parts: dict[int, _Partition] = {}

    @property
    def partitions(self) -> set[int]:
        return set(self._parts)

    # -- assignment ---------------------------------------------------------------------
    def load(
        self,
        targets: Mapping[int, int],
        *,
        timeout: float,
        progress: ProgressFn | None = None,
    ) -> None:
        """Assign ``targets`` (partition -> end offset to reach) and read each to its end."""
        new = [p for p in targets if p not in self._parts]
        for p in new:
            self._parts[p] = _Partition()
        if new:
            self._consumer.incremental_assign(
                [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in new]
            )
        deadline = time.monotonic() + timeout
        pending = {p: end for p, end in targets.items() if end > 0}
        last_report = time.monotonic()
        while pending:
            self.poll(20_000, 0.1)
            self.refresh_positions()
            for p in list(pending):
                if self.position(p) >= pending[p]:
                    del pending[p]
            now = time.monotonic()
            if pending and now > deadline:
                raise ViewLoadError(
                    f"consent partitions {sorted(pending)} of {self.topic} not loaded in "
                    f"{timeout:.0f} s (positions "
                    f"{ {p: self.position(p) for p in pending} }, targets {pending})"
                )
            if progress is not None and pending and now - last_report >= 1.0:
                last_report = now
                self._report(targets, progress)
        if progress is not None:
            self._report(targets, progress)

    def _report(self, targets: Mapping[int, int], progress: ProgressFn) -> None:
        for p, end in targets.items():
            progress(p, self.position(p), end)

    def drop(self, partitions: Iterable[int]) -> None:
        gone = [p for p in partitions if p in self._parts]
        if not gone:
            return
        self._consumer.incremental_unassign([TopicPartition(self.topic, p) for p in gone])
        for p in gone:
            del self._parts[p]

    # -- reading ------------------------------------------------------------------------
    def poll(self, max_records: int = 5000, timeout: float = 0.0) -> int:
        """Apply what the consumer has fetched (non-blocking by default); records applied."""
        msgs = self._consumer.consume(max_records, timeout)
        parts = self._parts
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal() or err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    raise KafkaException(err)
                log.warning("consent view: %s", err)
                continue
            part = parts.get(m.partition())  # type: ignore[arg-type]  # never None for records
            if part is None:
                continue  # fetched before a revocation
            key = m.key()
            if key is None:
                continue  # not a subject's record (the writer always keys by subject)
            value = m.value()
            if value is None:
                part.records.pop(key, None)
                part.erased.add(key)
            else:
                part.records[key] = value
                part.erased.discard(key)
            part.position = m.offset() + 1  # type: ignore[operator]  # int for records
        return len(msgs)

    def refresh_positions(self) -> None:
        """Take the consumer's positions (past transaction markers, which yield no record)."""
        if not self._parts:
            return
        for tp in self._consumer.position([TopicPartition(self.topic, p) for p in self._parts]):
            part = self._parts.get(tp.partition)
            if part is not None and tp.offset > part.position:
                part.position = tp.offset

    def position(self, partition: int) -> int:
        """Next offset of ``partition`` not applied (-1 if not assigned); as of the last
        ``refresh_positions``."""
        part = self._parts.get(partition)
        return -1 if part is None else part.position

    def lookup(self, partition: int, subject: bytes) -> ConsentLookup:
        part = self._parts.get(partition)
        if part is None:
            return MISSING
        raw = part.records.get(subject)
        if raw is not None:
            return ConsentLookup("present", raw)
        if subject in part.erased:
            return ERASED
        return MISSING

    def size(self) -> int:
        """Subjects held, over every partition."""
        return sum(len(p.records) for p in self._parts.values())

    def close(self) -> None:
        self._consumer.close()
