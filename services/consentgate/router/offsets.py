"""End offsets of ``consent.state``, observed in a background thread for the gate.

Every ``interval`` (and at once when the loop asks) one ``ListOffsets`` request, isolation
read_committed (the last stable offset: what a read_committed view can reach), for the
partitions the worker holds. Each answer is stamped with the wall time taken *before* the
request was sent, so every consent record committed before that time lies below the end.
The loop drains the answers (``drain``) and feeds them to the pure
:class:`~consentgate.router.gate.WatermarkTracker`; only the loop thread touches the tracker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from confluent_kafka import IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # admin re-exports implicitly
    AdminClient,
    OffsetSpec,
)

__all__ = ["EndOffsetPoller", "Observation"]

log = logging.getLogger(__name__)

Observation = tuple[float, dict[int, int]]  # (observed_at wall time, partition -> end)

# Answers that mean "ask again shortly" even when librdkafka's ListOffsets error does not say
# retriable (it did not for NOT_LEADER_FOR_PARTITION right after topic creation, in CI and
# on this machine: test_router_leaks failed through StateReader.read)
_TRANSIENT = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        # after a broker restart the client's metadata is one leader epoch behind for a
        # moment (seen at the first assignment after a restart: test_faults_broker)
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.OFFSET_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
    }
)


def transient(error: object) -> bool:
    """Whether a Kafka error is worth asking again for."""
    return isinstance(error, KafkaError) and (error.retriable() or error.code() in _TRANSIENT)


class EndOffsetPoller:
    """A daemon thread asking for end offsets; answers queue up for the loop."""

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        topic: str,
        *,
        interval: float = 0.05,
        request_timeout: float = 5.0,
    ) -> None:
        self.topic = topic
        self.interval = interval
        self._admin = AdminClient(dict(kafka_config))
        self._timeout = request_timeout
        self._partitions: tuple[int, ...] = ()
        self._answers: deque[Observation] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0

    def set_partitions(self, partitions: set[int]) -> None:
        self._partitions = tuple(sorted(partitions))
        self._wake.set()

    def request(self) -> None:
        """Ask for an observation now (an event needs one newer than any so far)."""
        self._wake.set()

    def observe(self, partitions: tuple[int, ...] | None = None) -> Observation:
        """One blocking observation (also used at assignment, before loading the view)."""
        parts = self._partitions if partitions is None else partitions
        if not parts:
            return time.time(), {}
        # A retriable answer (a leader moving, a topic just created) is asked again within
        # the request timeout; observed_at is taken before the request that answered.
        deadline = time.monotonic() + self._timeout
        while True:
            observed_at = time.time()
            try:
                return observed_at, self._list(parts)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if not transient(error) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def _list(self, parts: tuple[int, ...]) -> dict[int, int]:
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # unannotated upstream
        futures = self._admin.list_offsets(
            {TopicPartition(self.topic, p): latest for p in parts},
            isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=self._timeout,
        )
        return {tp.partition: int(f.result().offset) for tp, f in futures.items()}

    def drain(self) -> list[Observation]:
        out = []
        answers = self._answers
        while answers:
            out.append(answers.popleft())
        return out

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="consent-end-offsets", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                obs = self.observe()
            except Exception as exc:  # noqa: BLE001 - no observation: the gate fails closed
                self.errors += 1
                if self.errors % 100 == 1:
                    log.warning("end offsets of %s unavailable: %s", self.topic, exc)
                self._stop.wait(min(1.0, self.interval * 10))
            else:
                if obs[1]:
                    self._answers.append(obs)
            self._wake.wait(self.interval)
            self._wake.clear()
