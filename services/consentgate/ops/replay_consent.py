"""The consent a replay judges on: ``now`` (the current view) or ``event-time`` (history).

``now`` (:class:`CurrentConsent`): ``consent.state`` read in full (the router's
:class:`~consentgate.router.view.ConsentView`, read_committed, every partition), and over it
every change of ``consent.changes`` the state may not show yet: the log is read from the
router group's committed offsets (the router never commits past a withdrawal its view does
not show; no commit yet: from the low watermark) and each change is folded over the
subject's state record with ``apply``, the fold's own rule (idempotent: what the state
already holds is a no-op). Events are judged at processing time, the wall clock.

While the replay runs, :meth:`CurrentConsent.catch_up` reads the changes appended since; the
engine calls it before each commit, after its records are appended, and retracts the data of
a subject that withdrew meanwhile (see :mod:`consentgate.ops.replay`): a withdrawal the
router may already have retracted never leaves replayed data behind its retraction.

``event-time`` (:class:`HistoryConsent`): every change of ``consent.changes``; an event at
``t`` is judged on the changes recorded by ``t``, at ``now = t`` (see
:mod:`consentgate.ops.replay_history`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from consentgate.consent.timeline import Timeline, apply
from consentgate.errors import ConfigError, ConsentgateError, DecodeError, ValidationError
from consentgate.models.consent import ConsentChange
from consentgate.ops.reader import read_topic
from consentgate.ops.replay_history import (
    ERASED,
    NO_RECORD,
    Consent,
    ConsentHistory,
    admit,
    event_time_consent,
)
from consentgate.ops.replay_topics import partitions_of
from consentgate.policy import ReasonCode
from consentgate.router.offsets import EndOffsetPoller
from consentgate.router.partitioner import SubjectPartitioner
from consentgate.router.pending import retracting
from consentgate.router.plan import Router
from consentgate.router.view import ConsentView

__all__ = ["ConsentSource", "CurrentConsent", "HistoryConsent", "partition_count"]

log = logging.getLogger(__name__)

_UNREADABLE = Consent(None, ReasonCode.CONSENT_UNREADABLE)


class ConsentSource(Protocol):
    def consent(self, subject: str, event_time: datetime) -> Consent: ...

    def judged_at(self, event_time: datetime, wall: datetime) -> datetime: ...

    def catch_up(self) -> list[ConsentChange]: ...

    def close(self) -> None: ...


def partition_count(kafka: Mapping[str, Any], topic: str) -> int:
    """The partition count of ``topic``; ConfigError if it does not exist."""
    count = partitions_of(kafka, topic)
    if count is None:
        raise ConfigError(f"topic {topic} does not exist")
    return count


class CurrentConsent:
    """consent.state now, plus the changes it may not show yet (``--consent now``)."""

    def __init__(
        self,
        kafka: Mapping[str, Any],
        *,
        state_topic: str,
        changes_topic: str,
        router_group: str,
        core: Router,
        timeout: float = 300.0,
    ) -> None:
        self.kafka = dict(kafka)
        self.changes_topic = changes_topic
        self.core = core
        self.timeout = timeout
        self.state_partitions = partition_count(self.kafka, state_topic)
        self.changes_partitions = partition_count(self.kafka, changes_topic)
        self._of = SubjectPartitioner(self.state_partitions)
        self._overlay: dict[str, Consent] = {}
        self._view = ConsentView(self.kafka, state_topic)
        self._tail = Consumer(
            {
                **self.kafka,
                "group.id": router_group,  # only read: committed(); never joined, never committed
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": False,
            }
        )
        self._ends = EndOffsetPoller(self.kafka, changes_topic)
        self.subjects = 0
        self.tail_changes = 0
        parts = [TopicPartition(changes_topic, p) for p in range(self.changes_partitions)]
        committed = self._tail.committed(parts, timeout=30)
        self._next: dict[int, int] = {}  # next offset of each changes partition to read
        for tp in committed:
            low, _ = self._tail.get_watermark_offsets(tp, timeout=30)
            self._next[tp.partition] = max(tp.offset, int(low or 0))
        starts = [TopicPartition(changes_topic, p, o) for p, o in self._next.items()]
        _, state_ends = EndOffsetPoller(self.kafka, state_topic).observe(
            tuple(range(self.state_partitions))
        )
        self._view.load(state_ends, timeout=timeout)
        self.subjects = self._view.size()
        self._tail.assign(starts)
        self.catch_up()

    def consent(self, subject: str, event_time: datetime) -> Consent:
        known = self._overlay.get(subject)
        if known is not None:
            return known
        return self._stored(subject)

    def _stored(self, subject: str) -> Consent:
        key = subject.encode()
        lookup = self._view.lookup(self._of(key), key)
        if lookup.state == "erased":
            return ERASED
        if lookup.state == "missing":
            return NO_RECORD
        try:
            return Consent(self.core.timeline(lookup.raw))
        except DecodeError:
            return _UNREADABLE

    def judged_at(self, event_time: datetime, wall: datetime) -> datetime:
        return wall

    def catch_up(self) -> list[ConsentChange]:
        """Fold in every change appended to consent.changes until now; the withdrawals and
        erasures among them."""
        _, ends = self._ends.observe(tuple(range(self.changes_partitions)))
        deadline = time.monotonic() + self.timeout
        taking: list[ConsentChange] = []
        while not self._reached(ends):
            if time.monotonic() > deadline:
                raise ConsentgateError(f"{self.changes_topic} not read to its end in time")
            for msg in self._tail.consume(10_000, 0.1):
                err = msg.error()
                if err is not None:
                    if err.fatal() or err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                        raise KafkaException(err)
                    continue
                partition = msg.partition() or 0
                self._next[partition] = (msg.offset() or 0) + 1
                change = self._fold(msg.key(), msg.value(), partition)
                if change is not None and retracting(change):
                    taking.append(change)
        return taking

    def _reached(self, ends: Mapping[int, int]) -> bool:
        """Read to ``ends``: by the records applied, or the consumer's position (which moves
        past transaction markers; unknown until it fetched something)."""
        late = [p for p, end in ends.items() if self._next.get(p, 0) < end]
        if not late:
            return True
        for tp in self._tail.position([TopicPartition(self.changes_topic, p) for p in late]):
            if tp.offset > self._next.get(tp.partition, 0):
                self._next[tp.partition] = tp.offset
        return all(self._next.get(p, 0) >= ends[p] for p in late)

    def _fold(self, key: bytes | None, value: bytes | None, partition: int) -> ConsentChange | None:
        if value is None:
            return None
        try:
            change = self.core.serde.decode_model(value, ConsentChange)
        except (DecodeError, ValidationError):
            return None  # the fold dead-letters it: not consent
        if admit(change, key, partition, self.changes_partitions) is not None:
            return None
        subject = change.subject_id
        base = self.consent(subject, change.effective_time)
        if base.override is ReasonCode.CONSENT_UNREADABLE:
            return change  # every event of the subject stays denied
        current: Timeline | None = base.timeline  # an erasure tombstone folds from nothing
        try:
            updated = apply(current, change)
        except ValidationError:
            return None
        self.tail_changes += 1
        self._overlay[subject] = Consent(updated)
        return change

    def close(self) -> None:
        self._tail.close()
        self._view.close()


class HistoryConsent:
    """Every admitted change of consent.changes (``--consent event-time``)."""

    def __init__(self, kafka: Mapping[str, Any], *, changes_topic: str, core: Router) -> None:
        partitions = partition_count(kafka, changes_topic)
        self.history = ConsentHistory()
        refused = 0
        for msg in read_topic(dict(kafka), changes_topic):
            value = msg.value()
            if value is None:
                continue
            try:
                change = core.serde.decode_model(value, ConsentChange)
            except (DecodeError, ValidationError):
                refused += 1
                continue
            if admit(change, msg.key(), msg.partition() or 0, partitions) is not None:
                refused += 1
                continue
            self.history.add(change)
        if refused:
            log.info("%s: %d records the fold refuses, not consent", changes_topic, refused)
        self.subjects = self.history.subjects
        self.tail_changes = 0

    def consent(self, subject: str, event_time: datetime) -> Consent:
        return event_time_consent(self.history, subject, event_time)

    def judged_at(self, event_time: datetime, wall: datetime) -> datetime:
        return event_time

    def catch_up(self) -> list[ConsentChange]:
        return []

    def close(self) -> None:
        return None
