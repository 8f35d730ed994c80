"""Reading a replay's range: every record of ``[start, end)`` of each partition, in order.

One consumer of the replay's group, ``assign()`` only (never joined, so no rebalance),
read_committed. A partition is done at its end offset, at a record beyond it, or at its end
of partition (a range ending on transaction markers). ``commit(positions)`` is called every
``commit_interval`` seconds while records come, and once at the end, with the next offset to
read of every partition. ``rate`` (records/s) throttles: a replay should not crowd out the
router on a busy cluster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consentgate.ops.replay_progress import Progress
from consentgate.ops.replay_range import PartitionRange
from consentgate.router.plan import RawRecord

__all__ = ["RangeReader", "raw_record"]

log = logging.getLogger(__name__)

Commit = Callable[[dict[int, int]], None]


def raw_record(m: Message) -> RawRecord:
    ts_type, ts = m.timestamp()
    return RawRecord(
        m.topic() or "",
        m.partition() or 0,
        m.offset() or 0,
        m.key(),
        m.value(),
        datetime.fromtimestamp(ts / 1000, UTC) if ts_type and ts > 0 else None,
    )


@dataclass
class RangeReader:
    consumer: Consumer
    topic: str
    ranges: Mapping[int, PartitionRange]
    rate: float | None = None
    commit_interval: float = 0.5

    def read(
        self, handle: Callable[[RawRecord], None], progress: Progress, commit: Commit | None
    ) -> int:
        """Every record of the ranges to ``handle``; how many."""
        todo = {p: r for p, r in self.ranges.items() if r.size > 0}
        self._todo = todo
        self._positions = {p: r.start for p, r in self.ranges.items()}
        self._paused: list[TopicPartition] = []
        self.consumer.assign([TopicPartition(self.topic, p, r.start) for p, r in todo.items()])
        batch = 2000 if self.rate is None else max(1, min(2000, int(self.rate * 0.1)))
        began = last_commit = time.monotonic()
        done = committed_at = 0
        try:
            while todo:
                for msg in self.consumer.consume(batch, 0.2):
                    if self._take(msg):
                        handle(raw_record(msg))
                        done += 1
                        self._advance(msg.partition() or 0, msg.offset() or 0)
                self._throttle(done, began)
                progress.update(done)
                now = time.monotonic()
                if commit and done > committed_at and now - last_commit >= self.commit_interval:
                    commit(dict(self._positions))
                    committed_at, last_commit = done, time.monotonic()
        finally:
            if self._paused:
                self.consumer.resume(self._paused)
            self.consumer.unassign()
        progress.done = done
        progress.finish()
        if commit is not None:
            commit(dict(self._positions))
        return done

    def _take(self, msg: Message) -> bool:
        """Whether ``msg`` is a record of the range to handle now."""
        err = msg.error()
        p = msg.partition() or 0
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                self._finished(p)
                return False
            if err.fatal() or not err.retriable():
                raise KafkaException(err)
            log.warning("reading %s: %s", self.topic, err)
            return False
        r = self._todo.get(p)
        offset = msg.offset() or 0
        if r is None or offset < self._positions[p]:
            return False
        if offset >= r.end:
            self._finished(p)
            return False
        return True

    def _advance(self, p: int, offset: int) -> None:
        self._positions[p] = offset + 1
        if offset + 1 >= self.ranges[p].end:
            self._finished(p)

    def _finished(self, p: int) -> None:
        if self._todo.pop(p, None) is not None:
            self._positions[p] = self.ranges[p].end
            tp = TopicPartition(self.topic, p)
            self._paused.append(tp)
            self.consumer.pause([tp])

    def _throttle(self, done: int, began: float) -> None:
        if self.rate is not None:
            ahead = done / self.rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
