"""Reading one subject's consent state back: for ``consent show``, the API's timeline read
and "is my change in consent-state yet" (``wait_visible``).

A read loads the subject's consent-state partition (read_committed) to its end offset and
looks the subject up; ``follow`` keeps reading while waiting. A change is visible once the
subject's record retains it or wiped it (an erasure keeps the ids it wiped).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import AdminClient

from consentgate.consent.timeline import Timeline
from consentgate.errors import ConsentgateError
from consentgate.models.consent import ConsentTimeline
from consentgate.router.offsets import EndOffsetPoller
from consentgate.router.partitioner import partition_for
from consentgate.router.view import ConsentView
from consentgate.serde import Serde

__all__ = ["StateReader", "SubjectState", "visible"]


@dataclass(frozen=True, slots=True)
class SubjectState:
    subject_id: str
    partition: int
    status: str  # "present" | "erased" (tombstone) | "missing"
    timeline: Timeline | None


def visible(state: SubjectState, change_ids: Iterable[str]) -> bool:
    """Whether every change id is retained or wiped by the subject's state record."""
    if state.timeline is None:
        return False
    record = state.timeline.record
    known = {c.change_id for c in record.changes} | set(record.erased_change_ids)
    return all(cid in known for cid in change_ids)


class StateReader:
    def __init__(self, kafka_config: Mapping[str, Any], topic: str, serde: Serde) -> None:
        self.kafka_config = dict(kafka_config)
        self.topic = topic
        self.serde = serde
        meta = AdminClient(self.kafka_config).list_topics(topic, timeout=30)
        found = meta.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise ConsentgateError(f"consent-state topic {topic} not found")
        self.partitions = len(found.partitions)
        self._view = ConsentView(self.kafka_config, topic)
        self._ends = EndOffsetPoller(self.kafka_config, topic)

    def read(self, subject_id: str, timeout: float = 60.0) -> SubjectState:
        partition = partition_for(subject_id.encode(), self.partitions)
        _, ends = self._ends.observe((partition,))
        self._view.load(ends, timeout=timeout)
        return self._state(subject_id, partition)

    def wait_visible(
        self, subject_id: str, change_ids: Iterable[str], timeout: float = 30.0
    ) -> SubjectState | None:
        """The subject's state once it shows every change id; None after ``timeout``."""
        ids = list(change_ids)
        deadline = time.monotonic() + timeout
        state = self.read(subject_id, timeout)
        while not visible(state, ids):
            if time.monotonic() > deadline:
                return None
            self._view.poll(5000, 0.05)
            state = self._state(subject_id, state.partition)
        return state

    def _state(self, subject_id: str, partition: int) -> SubjectState:
        found = self._view.lookup(partition, subject_id.encode())
        if found.state != "present" or found.raw is None:
            return SubjectState(subject_id, partition, found.state, None)
        record = self.serde.decode_model(found.raw, ConsentTimeline)
        return SubjectState(subject_id, partition, "present", Timeline(record))

    def close(self) -> None:
        self._view.close()
