"""Group membership of a router worker: what happens when partitions come and go.

Eager range assignment over co-partitioned topics (every raw source and consent.changes,
same partition count): partition N of each lands on the same worker, so the worker holding
raw partition N holds the changes of the same subjects too.

- **assigned** N: observe consent-state N's end offset (read_committed), then read the
  view's partition N up to it before any record of raw partition N is judged (the
  rebalance callback blocks; librdkafka fetches nothing for the new assignment meanwhile),
  read today's provisions of N back, and only then count as ready. A partition the view
  still holds from before the rebalance is only caught up, not reloaded.
- **revoked**: commit what was processed (outputs + offsets, one transaction) so that the
  next owner starts exactly there; drop the queues of the revoked partitions; not ready.
- **lost** (the group moved on without us): abort the open transaction (its commit would be
  fenced), drop the queues; not ready.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaException, TopicPartition

from consentgate.router.pending import Unsettled
from consentgate.router.txn import Fatal

if TYPE_CHECKING:
    from consentgate.router.loop import RouterLoop

__all__ = ["subscribe"]

log = logging.getLogger(__name__)


def subscribe(loop: RouterLoop) -> None:
    """Subscribe the loop's consumer to every source and the changes topic."""
    s = loop.s
    topics = [src.topic for src in s.policy.sources] + [s.config.topics.consent_changes]

    def on_assign(consumer: Any, partitions: list[TopicPartition]) -> None:
        started = time.monotonic()
        parts = {tp.partition for tp in partitions}
        log.info(
            "assigned partitions %s of %s", sorted(parts), sorted({tp.topic for tp in partitions})
        )
        for tp in partitions:
            loop.queues.setdefault((tp.topic, tp.partition), deque())
        for p in parts:
            loop.unsettled.setdefault(p, Unsettled())
        loop.view.drop(loop.view.partitions - parts)
        loop.poller.set_partitions(parts)
        loop.changes_poller.set_partitions(parts)
        try:
            observed_at, ends = loop.poller.observe(tuple(sorted(parts)))
        except KafkaException as exc:  # the broker went away again: stop, clearly
            raise Fatal(f"end offsets of consent-state unavailable at assignment: {exc}") from exc
        for p, end in ends.items():
            loop.tracker.observe_end(p, end, observed_at)
            s.note_loading(p, loop.view.position(p), end)
        s.assigned = parts
        s.assigned_once = True
        s.revoked = False
        s.set_ready_gauge()
        loop.view.load(ends, timeout=s.config.loop.view_load_timeout, progress=s.note_loading)
        for p in parts:  # load() reported each partition's final position as loaded
            loop.tracker.observe_position(p, loop.view.position(p))
        loop.emitter.reload_provisions(parts)
        for p in parts:  # the changes are read from here on (the gate's patience counts)
            loop.changes_tracker.reset_position(p, time.monotonic())
        s.set_ready_gauge()
        log.info(
            "consent view ready for partitions %s: %d subjects in %.1f s",
            sorted(parts),
            loop.view.size(),
            time.monotonic() - started,
        )

    def on_revoke(consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("revoked partitions %s", sorted({tp.partition for tp in partitions}))
        s.revoked = True
        s.set_ready_gauge()
        if loop.outbox.open:
            loop.commit()
        _forget(loop, partitions)

    def on_lost(consumer: Any, partitions: list[TopicPartition]) -> None:
        log.warning("lost partitions %s", sorted({tp.partition for tp in partitions}))
        s.revoked = True
        s.set_ready_gauge()
        loop.discard()  # the next assignment reads the committed provisions back
        _forget(loop, partitions)

    loop.consumer.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)


def _forget(loop: RouterLoop, partitions: list[TopicPartition]) -> None:
    for tp in partitions:
        key = (tp.topic, tp.partition)
        loop.queues.pop(key, None)
        loop.paused.discard(key)
        loop.offsets.pop(key, None)
    gone = {tp.partition for tp in partitions}
    for p in gone:
        loop.unsettled.pop(p, None)
        loop.changes_tracker.reset_position(p)
    loop.s.assigned -= gone
