"""From plans to produced records: sizes checked, provisions placed, metrics batched.

- A record over ``MAX_RECORD_BYTES`` would be refused by Kafka and abort the transaction
  forever: before anything of the event is produced, the event becomes a dead letter
  (stage ``produce``, ``RecordTooLarge``) whose raw value is cut to ``dlq_max_bytes``, with
  the original size and SHA-256 in the reason. The input always ends in an outcome.
- Provisions go to the partition of their subject (the raw partition): on assignment the
  worker reads today's provisions of its partitions back (read_committed) so that a
  restarted or new worker neither repeats nor skips one (``reload_provisions``).
- Outcome counts are kept per transaction and added to the Prometheus counters when it
  commits (an aborted transaction's outcomes never happened).
- The sampled shadow check compares a cached decision with the uncached rule's and stops
  the worker on any difference.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, time
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition

from consentgate.models.consent import ConsentChange
from consentgate.policy import Decision, Sink
from consentgate.router.outputs import Output
from consentgate.router.plan import RawRecord, RoutePlan, Router
from consentgate.router.state import LoopState
from consentgate.router.txn import Fatal, Outbox

__all__ = ["MAX_RECORD_BYTES", "Emitter"]

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 990_000  # under librdkafka's and the broker's 1,000,000-byte defaults
_VALUE_CHECK = MAX_RECORD_BYTES - 100_000  # below it, key + headers cannot make it too large


class Emitter:
    def __init__(
        self,
        state: LoopState,
        outbox: Outbox,
        core: Router,
        kafka_config: Mapping[str, Any],
    ) -> None:
        self.s = state
        self.outbox = outbox
        self.core = core
        self._kafka_config = dict(kafka_config)
        self._provisions = state.config.topics.provisions
        # outcomes of the open transaction: events per distinct decisions tuple (a verdict
        # answered from memory is the same tuple), expanded into flat per-(sink, reason)
        # slots at commit, once per distinct tuple of the transaction (not remembered by
        # the tuple's identity: that kept up to 65,536 superseded verdicts' decisions alive)
        self._decisions: dict[int, tuple[tuple[tuple[Sink, Decision], ...], int]] = {}
        self._slots: dict[tuple[str, str], int] = {}
        self._slot_labels: list[tuple[str, str]] = []
        self._dead = 0
        self._events = 0
        self._retractions: Counter[str] = Counter()

    # -- producing ----------------------------------------------------------------------
    def emit(self, plan: RoutePlan, rec: RawRecord, partition: int) -> None:
        outputs = plan.outputs
        for out in outputs:
            if (
                out.value is not None
                and len(out.value) > _VALUE_CHECK
                and _size(out) > MAX_RECORD_BYTES
            ):
                plan = self._too_large(rec, out)
                outputs = plan.outputs
                break
        self.outbox.produce_outputs(outputs, self._provisions, partition)
        self._events += 1
        if plan.dead_letter:
            self._dead += 1
        decisions = plan.decisions
        if decisions:
            held = self._decisions.get(id(decisions))
            self._decisions[id(decisions)] = (decisions, 1 if held is None else held[1] + 1)

    def emit_retractions(self, outs: Iterable[Output], change: ConsentChange, where: str) -> None:
        n = 0
        for out in outs:
            self.outbox.produce(out.topic, out.key, out.value, list(out.headers))
            self._retractions[out.topic] += 1
            n += 1
        log.info("%s: %s %s: %d retractions", where, change.action, change.change_id, n)

    def _too_large(self, rec: RawRecord, out: Output) -> RoutePlan:
        raw = rec.value or b""
        keep = self.s.config.loop.dlq_max_bytes
        reason = (
            f"a {out.topic} record of {_size(out)} bytes exceeds {MAX_RECORD_BYTES}; raw value "
            f"of {len(raw)} bytes (sha256 {hashlib.sha256(raw).hexdigest()})"
            + (f" truncated to its first {keep} bytes" if len(raw) > keep else "")
        )
        cut = RawRecord(rec.topic, rec.partition, rec.offset, rec.key, raw[:keep], rec.timestamp)
        letter = self.core.dead_letter(cut, datetime.now(UTC), "produce", RecordTooLarge(reason))
        return RoutePlan((letter,), None, dead_letter=True)

    def shadow_check(self, cached: RoutePlan, uncached: RoutePlan) -> None:
        """``uncached`` was planned first (it reads the provision memory without writing it),
        so both must be equal in every output and decision."""
        self.s.metrics.shadow_checks.inc()
        if cached.outputs != uncached.outputs or cached.decisions != uncached.decisions:
            self.s.metrics.shadow_mismatches.inc()
            raise Fatal(
                f"shadow check: cached and uncached decisions differ for subject "
                f"{cached.subject_id!r}: {[d.reason for _, d in cached.decisions]} vs "
                f"{[d.reason for _, d in uncached.decisions]}"
            )

    # -- transactions -------------------------------------------------------------------
    def committed(self) -> None:
        m = self.s.metrics
        counts = [0] * len(self._slot_labels)
        for decisions, n in self._decisions.values():
            slots = self._slots_for(decisions)
            if len(counts) < len(self._slot_labels):
                counts.extend([0] * (len(self._slot_labels) - len(counts)))
            for i in slots:
                counts[i] += n
        for (name, reason), n in zip(self._slot_labels, counts, strict=False):
            if n:
                m.outcome(name, reason).inc(n)
        if self._events:
            m.events.inc(self._events)
        if self._dead:
            m.dead_letters.inc(self._dead)
        for topic, n in self._retractions.items():
            m.retractions.labels(topic).inc(n)
        self.aborted()

    def _slots_for(self, decisions: tuple[tuple[Sink, Decision], ...]) -> list[int]:
        slots = []
        for sink, decision in decisions:
            label = (sink.name, decision.reason.value)
            slot = self._slots.get(label)
            if slot is None:
                slot = self._slots[label] = len(self._slot_labels)
                self._slot_labels.append(label)
            slots.append(slot)
        return slots

    def aborted(self) -> None:
        """Forget what the transaction would have counted (``rewind`` reloads provisions)."""
        self._decisions.clear()
        self._retractions.clear()
        self._dead = self._events = 0

    # -- provisions ---------------------------------------------------------------------
    def reload_provisions(self, partitions: Iterable[int], *, timeout: float = 60.0) -> int:
        """Make the provision memory today's committed provisions of ``partitions`` (the
        whole assignment: after an assignment, a loss or an aborted transaction, what the
        memory held may include provisions that were never committed). Returns how many."""
        self.core.forget_provisions()
        parts = sorted(partitions)
        if not parts:
            return 0
        since = int(datetime.combine(datetime.now(UTC).date(), time(), UTC).timestamp() * 1000)
        consumer = Consumer(
            {
                **self._kafka_config,
                "group.id": "consentgate-provision-reader",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
        try:
            topic = self._provisions
            starts = consumer.offsets_for_times(
                [TopicPartition(topic, p, since) for p in parts], timeout=timeout
            )
            todo = {tp.partition for tp in starts if tp.offset >= 0 and tp.offset != OFFSET_END}
            consumer.assign([tp for tp in starts if tp.partition in todo])
            ids: list[str] = []
            while todo:
                for msg in consumer.consume(10_000, 1.0):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            todo.discard(msg.partition())
                            continue
                        raise Fatal(f"reading provisions back: {err}")
                    key = msg.key()
                    if key is not None:
                        ids.append(key.decode())
        finally:
            consumer.close()
        self.core.remember_provisions(ids)
        log.info("provisions of today read back: %d on partitions %s", len(ids), parts)
        return len(ids)


def _size(out: Output) -> int:
    return (
        len(out.value or b"") + len(out.key or b"") + sum(len(k) + len(v) for k, v in out.headers)
    )


class RecordTooLarge(Exception):
    pass
