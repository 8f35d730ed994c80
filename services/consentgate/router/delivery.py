"""Fail-stop on a failed delivery: an offset is never committed past an output Kafka refused.

faust commits offsets after flushing its producer (``Consumer._commit_offsets``), but a record
the producer gave up on (a non-retriable error, or retries exhausted) completes the flush like
any other: faust would then commit the offset of an event whose sink record, decision or
retraction never arrived. "Every input is accounted for" forbids that.

:class:`DeliveryGuard` watches every future the router's outputs return. The router's consumer
(:class:`GuardedConsumer`) asks the guard right before each commit, i.e. after faust's flush,
when every output of the events being committed has its answer. On a failure it logs the
reason and ends the process with :data:`EXIT_DELIVERY_FAILED` *instead of committing*; the
worker's supervisor restarts it, and it re-reads from the last committed offset (at-least-once,
outputs keyed deterministically). Keeping the worker alive would mean either committing past
the loss or stalling silently.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

__all__ = ["EXIT_DELIVERY_FAILED", "DeliveryGuard", "GuardedConsumer", "GuardedTransport"]

log = logging.getLogger(__name__)

EXIT_DELIVERY_FAILED = 70  # EX_SOFTWARE


class DeliveryGuard:
    """Collects the outcome of every handed-over output until the next commit."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Future[Any]] = set()
        self.failure: str | None = None
        self.failed = 0

    def watch(self, topic: str, delivery: asyncio.Future[Any]) -> None:
        self._pending.add(delivery)
        delivery.add_done_callback(functools.partial(self._done, topic))

    def _done(self, topic: str, delivery: asyncio.Future[Any]) -> None:
        self._pending.discard(delivery)
        self._judge(topic, delivery)

    def _judge(self, topic: str, delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled():
            reason = f"record for {topic} was cancelled before delivery"
        elif (exc := delivery.exception()) is not None:
            reason = f"record for {topic} not delivered: {exc!r}"
        else:
            return
        self.failed += 1
        log.error("%s", reason)
        if self.failure is None:
            self.failure = reason

    def check(self) -> str | None:
        """The first failure so far, judging done futures whose callbacks have not run yet."""
        for delivery in [d for d in self._pending if d.done()]:
            self._pending.discard(delivery)
            self._judge("a sink", delivery)
        return self.failure

    @property
    def pending(self) -> int:
        return len(self._pending)


def fail_stop(reason: str) -> None:
    """Log and end the process at once, without committing anything further."""
    log.critical(
        "stopping without committing: %s. Offsets stay at the last commit; a restarted "
        "worker re-reads from there (exit code %d)",
        reason,
        EXIT_DELIVERY_FAILED,
    )
    logging.shutdown()
    os._exit(EXIT_DELIVERY_FAILED)


class GuardedConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka consumer, asking the app's :class:`DeliveryGuard` before committing."""

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        guard: DeliveryGuard | None = getattr(self.app, "delivery_guard", None)
        failure = guard.check() if guard is not None else None
        if failure is not None:
            fail_stop(failure)
        return await super()._commit(offsets)


class GuardedTransport(aiokafka_driver.Transport):
    """The aiokafka transport with :class:`GuardedConsumer`."""

    Consumer = GuardedConsumer
