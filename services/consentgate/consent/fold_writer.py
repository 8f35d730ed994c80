"""The consent fold's Kafka side for one worker process: per assigned partition, the state
loaded and a transactional producer that fences every other writer of that partition.

On the first batch of consent-changes partition N this process handles, ``ensure(N)``:

1. starts a producer with ``transactional.id = consentgate-fold.<state topic>.<N>`` and
   calls ``init_transactions``: any earlier writer of partition N (a replica that lost the
   partition, or one killed mid-transaction) is fenced and its open transaction aborted;
2. reads consent-state partition N, read_committed, to its end offset (the fold's own
   committed writes), as the base of a :class:`PartitionFold`.

``write({N: result, ...})`` writes a batch's state records (to partition N, explicitly) and
dead letters in one transaction per partition, commits those transactions side by side (one
broker round trip for the batch, not one per partition) and returns once every one is
committed; any Kafka error raises
:class:`FoldFailed`, and the caller stops without acknowledging the batch: the records are
folded again after the restart (harmlessly: the fold is idempotent). A fenced producer is
a replica that lost the partition; it stops the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException, Producer

from consentgate.consent.fold import ERASED_BASE, FoldResult, PartitionFold, Rejection
from consentgate.consent.fold_config import FoldTopics
from consentgate.errors import ConsentgateError
from consentgate.models.records import DeadLetter
from consentgate.router.offsets import EndOffsetPoller
from consentgate.router.view import ConsentView
from consentgate.serde import Serde

__all__ = ["FoldFailed", "FoldWriter"]

log = logging.getLogger(__name__)


class FoldFailed(ConsentgateError):
    """A batch could not be committed; nothing of it may be acknowledged."""


class FoldWriter:
    """Loaded partitions, their fences, and the transactional writes."""

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        topics: FoldTopics,
        serde: Serde,
        *,
        partitions: int,
        horizon_days: int,
        load_timeout: float = 120.0,
    ) -> None:
        self.kafka_config = dict(kafka_config)
        self.topics = topics
        self.serde = serde
        self.partitions = partitions
        self.horizon_days = horizon_days
        self.load_timeout = load_timeout
        self._view = ConsentView(self.kafka_config, topics.state)
        self._ends = EndOffsetPoller(self.kafka_config, topics.state)
        self._producers: dict[int, Producer] = {}
        self.folds: dict[int, PartitionFold] = {}
        self._commits = ThreadPoolExecutor(max(1, partitions), thread_name_prefix="fold-commit")

    def ensure(self, partition: int) -> PartitionFold:
        fold = self.folds.get(partition)
        if fold is not None:
            return fold
        started = time.monotonic()
        producer = Producer(
            {
                **self.kafka_config,
                "transactional.id": f"consentgate-fold.{self.topics.state}.{partition}",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 1,
                "transaction.timeout.ms": 60_000,
            }
        )
        try:
            producer.init_transactions(30.0)
            _, ends = self._ends.observe((partition,))
            self._view.load(ends, timeout=self.load_timeout)
        except KafkaException as exc:
            raise FoldFailed(f"cannot take consent partition {partition}: {exc}") from exc
        self._producers[partition] = producer
        view = self._view

        def base(key: bytes) -> bytes | None:
            found = view.lookup(partition, key)
            if found.state == "present":
                return found.raw
            return ERASED_BASE if found.state == "erased" else None

        fold = PartitionFold(
            topic=self.topics.changes,
            partition=partition,
            partitions=self.partitions,
            serde=self.serde,
            horizon_days=self.horizon_days,
            base=base,
        )
        self.folds[partition] = fold
        log.info(
            "consent partition %d taken: fenced earlier writers, %d subjects loaded in %.2f s",
            partition,
            self._view.size(),
            time.monotonic() - started,
        )
        return fold

    def write(self, results: Mapping[int, FoldResult]) -> None:
        """Commit each partition's state records and dead letters in one transaction; the
        transactions commit concurrently. Returns once all are committed (FoldFailed if any
        is not: then nothing of the batch may be acknowledged)."""
        now = datetime.now(UTC)
        commits: dict[int, Future[None]] = {}
        failure: FoldFailed | None = None
        for partition, result in results.items():
            if not result.writes and not result.rejected:
                continue
            producer = self._producers[partition]
            try:
                producer.begin_transaction()
                for key, value in result.writes.items():
                    self._produce(producer, self.topics.state, key, value, partition)
                for rejection in result.rejected:
                    letter = self._dead_letter(partition, rejection, now)
                    self._produce(producer, self.topics.dead_letters, rejection.record.key, letter)
            except KafkaException as exc:
                failure = failure or _failed(partition, exc)
                break
            commits[partition] = self._commits.submit(producer.commit_transaction, 30.0)
        for partition, commit in commits.items():  # wait for every one, even after a failure
            try:
                commit.result()
            except KafkaException as exc:
                failure = failure or _failed(partition, exc)
        if failure is not None:
            raise failure

    def _produce(
        self,
        producer: Producer,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {} if partition is None else {"partition": partition}
        while True:
            try:
                producer.produce(topic, key=key, value=value, **kwargs)
                return
            except BufferError:
                producer.poll(0.05)

    def _dead_letter(self, partition: int, rejection: Rejection, now: datetime) -> bytes:
        rec = rejection.record
        log.warning(
            "dead letter %s[%d]@%d (fold): %s: %s",
            self.topics.changes,
            partition,
            rec.offset,
            rejection.error_type,
            rejection.reason,
        )
        letter = DeadLetter(
            source_topic=self.topics.changes,
            source_partition=partition,
            source_offset=rec.offset,
            source_timestamp=(
                None
                if rec.timestamp_ms is None
                else datetime.fromtimestamp(rec.timestamp_ms / 1000, UTC)
            ),
            raw_key=rec.key,
            raw_value=rec.value,
            error_type=rejection.error_type,
            reason=rejection.reason,
            stage="fold",
            failed_at=now,
        )
        return self.serde.encode(letter)

    def drop(self, partitions: set[int]) -> None:
        """Forget revoked partitions (their next owner loads and fences anew)."""
        gone = [p for p in partitions if p in self.folds or p in self._producers]
        for p in gone:
            self.folds.pop(p, None)
            producer = self._producers.pop(p, None)
            if producer is not None:
                producer.flush(5.0)
        if gone:
            self._view.drop(gone)
            log.info("consent partitions %s released", sorted(gone))

    def close(self) -> None:
        self.drop(set(self._producers))
        self._commits.shutdown(wait=True)
        self._view.close()


def _failed(partition: int, exc: KafkaException) -> FoldFailed:
    return FoldFailed(f"consent partition {partition}: state write failed: {exc}")
