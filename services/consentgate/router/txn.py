"""The router's one transactional producer: every output and the input offsets, atomically.

One ``transactional.id`` per worker instance (stable across restarts: a restarted worker
fences its predecessor and aborts the transaction it left open). Offsets go into the
transaction with the consumer's group metadata (KIP-447), so a zombie of an older group
generation is fenced too. What can go wrong and what happens:

- ``produce`` raises BufferError (local queue full): serve delivery reports, retry;
- a commit fails with an abortable error (a record was refused: unknown topic, too large,
  delivery timeout, ...): :class:`Aborted`; the loop aborts, rewinds its consumer to the
  committed offsets and tries again, and stops after ``max_aborts`` in a row;
- a retriable commit error: retried; anything else, or a fatal error (fenced): :class:`Fatal`;
- a call that never returns (librdkafka does not always keep its timeout): with a
  :class:`~consentgate.router.stall.StallGuard`, the process stops (exit 70).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from consentgate.errors import ConsentgateError
from consentgate.router.outputs import Output
from consentgate.router.stall import StallGuard

__all__ = ["Aborted", "Fatal", "Outbox"]

log = logging.getLogger(__name__)


class Fatal(ConsentgateError):
    """The worker must stop without committing (exit code 70)."""


class Aborted(ConsentgateError):
    """The open transaction had to be aborted; nothing of it is visible."""


class Outbox:
    """Lazily begun transactions over one confluent-kafka producer."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        timeout: float = 30.0,
        stall: StallGuard | None = None,
    ) -> None:
        self._producer = Producer(dict(config))
        self._timeout = timeout
        self.retry_budget = 4 * timeout
        self.stall = stall
        self.open = False
        self.opened_at = 0.0

    def init(self) -> None:
        """Fence any predecessor with the same transactional.id (aborting its transaction)."""
        self._call(self._producer.init_transactions, self._timeout)

    def warm(self, topics: list[str]) -> None:
        """Learn every output topic's leaders now, not at its first record (seen: the first
        second of traffic waited ~0.5-1 s for 45 topics' metadata)."""
        for topic in topics:
            try:
                self._producer.list_topics(topic, timeout=self._timeout)
            except KafkaException as exc:
                raise self._classify(exc) from exc

    def begin(self) -> None:
        if not self.open:
            self._call(self._producer.begin_transaction)
            self.open = True
            self.opened_at = time.monotonic()

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Any,  # list of (name, bytes) or None; librdkafka's stub is narrower
        partition: int = -1,
    ) -> None:
        producer = self._producer
        while True:
            try:
                producer.produce(topic, value, key, partition, headers=headers)
            except BufferError:
                producer.poll(0.005)
                continue
            except KafkaException as exc:
                raise Aborted(f"{topic}: record refused: {exc.args[0]}") from exc
            break

    def produce_outputs(self, outputs: Iterable[Output], provisions: str, partition: int) -> None:
        """:meth:`produce` each of ``outputs``; provisions go to ``partition``."""
        produce = self._producer.produce
        for out in outputs:
            topic = out.topic
            headers: Any = list(out.headers) if out.headers else None  # see produce
            part = partition if topic == provisions else -1
            try:
                produce(topic, out.value, out.key, part, headers=headers)
            except BufferError:
                self.produce(topic, out.key, out.value, headers, part)
            except KafkaException as exc:
                raise Aborted(f"{topic}: record refused: {exc.args[0]}") from exc

    def poll(self) -> None:
        self._producer.poll(0)

    def commit(self, offsets: list[TopicPartition], group_metadata: Any) -> None:
        """Offsets + outputs, atomically. Raises Aborted (after aborting) or Fatal."""
        if not self.open:
            return
        try:
            if offsets:
                self._retrying(
                    self._producer.send_offsets_to_transaction,
                    offsets,
                    group_metadata,
                    self._timeout,
                )
            self._retrying(self._producer.commit_transaction, self._timeout)
        except Aborted:
            self.abort()
            raise
        self.open = False

    def abort(self) -> None:
        if not self.open:
            return
        self.open = False
        self._call(self._producer.abort_transaction, self._timeout)

    def close(self) -> None:
        self._producer.flush(10)

    # -- errors -------------------------------------------------------------------------
    def _retrying(self, fn: Any, *args: Any) -> None:
        """``fn`` until it succeeds, at most 10 times and for :attr:`retry_budget` seconds
        (each call may wait ``timeout``: with the broker gone, 10 x 30 s was 5 silent
        minutes before the router stopped)."""
        deadline = time.monotonic() + self.retry_budget
        for attempt in range(10):
            try:
                self._invoke(fn, *args)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if isinstance(err, KafkaError) and err.retriable() and not err.fatal():
                    if time.monotonic() >= deadline:
                        raise Fatal(
                            f"transaction: {fn.__name__} still failing after "
                            f"{self.retry_budget:.0f} s: {err}"
                        ) from exc
                    log.warning("transaction: %s (retry %d)", err, attempt + 1)
                    time.sleep(min(0.05 * 2**attempt, 2.0))
                    continue
                raise self._classify(exc) from exc
        raise Fatal(f"transaction: {fn.__name__} kept failing with retriable errors")

    def _call(self, fn: Any, *args: Any) -> None:
        try:
            self._invoke(fn, *args)
        except KafkaException as exc:
            raise self._classify(exc) from exc

    def _invoke(self, fn: Any, *args: Any) -> None:
        if self.stall is None:
            fn(*args)
            return
        with self.stall.call(fn.__name__):
            fn(*args)

    @staticmethod
    def _classify(exc: KafkaException) -> ConsentgateError:
        err = exc.args[0]
        if isinstance(err, KafkaError) and err.txn_requires_abort() and not err.fatal():
            return Aborted(f"transaction aborted: {err}")
        return Fatal(f"transactional producer: {err}")
