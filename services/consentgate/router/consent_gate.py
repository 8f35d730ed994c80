"""The time-correct gate on a running worker: end offsets from the broker, positions from faust.

- End offsets: an asyncio task asks the broker for the consent topic's end offsets
  (confluent-kafka ``AdminClient.list_offsets``, one request for all partitions, in a thread)
  every ``poll_interval`` and at once when an event needs an observation newer than any it
  has. Each answer is stamped with the wall time taken *before* the request was sent.
- Positions: :class:`~consentgate.router.consent_view.ConsentTable` reports every applied
  record (``on_applied``), revocations and finished recoveries; this class is its listener.

Agents call ``await gate.admit(partition, event_time)`` before judging an event; the answer
is READY or STALE (deny as ``consent_state_stale``), never WAIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from confluent_kafka import IsolationLevel, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # admin re-exports implicitly
    AdminClient,
    OffsetSpec,
)

from consentgate.router.gate import GateVerdict, WatermarkTracker

__all__ = ["AdminEndOffsets", "ConsentGate", "EndOffsetSource"]

log = logging.getLogger(__name__)


class EndOffsetSource(Protocol):
    def end_offsets(self, topic: str, partitions: Sequence[int]) -> Mapping[int, int]:
        """Blocking: the end offset (next offset to be written) of each partition."""


class AdminEndOffsets:
    """End offsets through one ``ListOffsets`` request (read_uncommitted, like faust reads)."""

    def __init__(self, kafka_config: Mapping[str, Any], *, request_timeout: float = 5.0) -> None:
        self._config = dict(kafka_config)
        self._admin: AdminClient | None = None  # created on first use: it connects at once
        self._lock = threading.Lock()  # the warm-up thread and the poller may race to create it
        self._timeout = request_timeout

    def end_offsets(self, topic: str, partitions: Sequence[int]) -> Mapping[int, int]:
        with self._lock:
            if self._admin is None:
                self._admin = AdminClient(self._config)
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # unannotated upstream
        request = {TopicPartition(topic, p): latest for p in partitions}
        futures = self._admin.list_offsets(
            request,
            isolation_level=IsolationLevel.READ_UNCOMMITTED,
            request_timeout=self._timeout,
        )
        return {tp.partition: int(f.result().offset) for tp, f in futures.items()}


class ConsentGate:
    """Holds events until the consent view is as new as they are (or the wait runs out)."""

    def __init__(
        self,
        source: EndOffsetSource,
        *,
        topic: str,
        partitions: int,
        max_wait: float = 2.0,
        clock_skew: float = 0.0,
        poll_interval: float = 0.1,
    ) -> None:
        self.tracker = WatermarkTracker(clock_skew=clock_skew)
        self.topic = topic
        self.partitions = list(range(partitions))
        self.max_wait = max_wait
        self.poll_interval = poll_interval
        self._source = source
        self._changed: asyncio.Event | None = None
        self._demand: asyncio.Event | None = None
        self._waiting = 0
        self.polls = 0
        self.poll_errors = 0
        self._warmed = False

    # -- ViewListener -----------------------------------------------------------------------
    def on_applied(self, partition: int, next_offset: int) -> None:
        self.tracker.observe_position(partition, next_offset)
        self._wake()

    def on_revoked(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.tracker.reset_position(partition)

    def on_recovered(self, positions: Mapping[int, int]) -> None:
        for partition in self.partitions:
            if partition in positions:
                self.tracker.observe_position(partition, positions[partition])
            else:
                self.tracker.reset_position(partition)
        self._wake()

    # -- polling ----------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Connect the end-offset source in a background thread, once (call at assignment).

        The polling task starts only when the worker is ready; without this its first
        request also pays for the client's connection and metadata (seen: ~3 s on a loaded
        machine), and the first events after startup would wait for it, or go stale.
        """
        if self._warmed:
            return
        self._warmed = True
        threading.Thread(target=self._warm_once, name="consent-gate-warm-up", daemon=True).start()

    def _warm_once(self) -> None:
        started = time.monotonic()
        try:
            self._source.end_offsets(self.topic, self.partitions)
        except Exception as exc:  # noqa: BLE001 - the poller reports failures; this only warms
            log.debug("gate warm-up failed: %s", exc)
        else:
            log.info(
                "consent gate: end offsets of %s reachable (%.0f ms)",
                self.topic,
                (time.monotonic() - started) * 1000,
            )

    async def run(self) -> None:
        """Poll end offsets until cancelled (register with ``app.task``)."""
        demand = self._demand_event()
        while True:
            observed_at = time.time()
            try:
                ends = await asyncio.to_thread(
                    self._source.end_offsets, self.topic, self.partitions
                )
            except Exception as exc:  # noqa: BLE001 - any failure: no observation, fail closed
                self.poll_errors += 1
                log.warning("end offsets of %s unavailable: %s", self.topic, exc)
            else:
                self.polls += 1
                for partition, end in ends.items():
                    self.tracker.observe_end(partition, end, observed_at)
                self._wake()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(demand.wait(), timeout=self.poll_interval)
            demand.clear()

    # -- admission --------------------------------------------------------------------------
    async def admit(self, partition: int, event_time: float) -> GateVerdict:
        """READY, or STALE after ``max_wait`` without a fresh enough consent view."""
        tracker = self.tracker
        started = time.monotonic()
        while True:
            verdict = tracker.check(
                partition,
                event_time,
                waiting_since=started,
                now_mono=time.monotonic(),
                max_wait=self.max_wait,
            )
            if verdict is not GateVerdict.WAIT:
                return verdict
            if tracker.required_offset(partition, event_time) is None:
                self._demand_event().set()
            changed = self._changed_event()
            remaining = started + self.max_wait - time.monotonic()
            self._waiting += 1
            try:
                await asyncio.wait_for(changed.wait(), timeout=max(remaining, 0.0))
            except TimeoutError:
                pass
            finally:
                self._waiting -= 1

    def _wake(self) -> None:
        if self._waiting and self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def _changed_event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _demand_event(self) -> asyncio.Event:
        if self._demand is None:
            self._demand = asyncio.Event()
        return self._demand
