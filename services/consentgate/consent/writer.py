"""The consent writer: appends changes to ``consent.changes.v1`` and keeps the compacted
per-subject timeline in ``consent.state.v1`` (key = subject id; null value = erased).

One writer per consent topic pair (it holds the current timelines in memory, loaded from
the state topic at start). Every change goes first to the append-only log, then the
resulting timeline to the state topic, both keyed by subject id with the murmur2
partitioner, so they land on the partition of the subject's events.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from consentgate.consent.timeline import Timeline, apply
from consentgate.errors import ConsentgateError
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentTimeline
from consentgate.serde import Serde
from consentgate.settings import Settings

__all__ = ["ConsentWriter", "after_ties", "new_change"]

log = logging.getLogger(__name__)


class ConsentWriter:
    """Validates, logs and applies consent changes."""

    def __init__(
        self,
        bootstrap: str,
        *,
        serde: Serde | None = None,
        settings: Settings | None = None,
        changes_topic: str = "consent.changes.v1",
        state_topic: str = "consent.state.v1",
    ) -> None:
        self.settings = settings or Settings()
        self.bootstrap = bootstrap
        self.serde = serde or Serde.from_settings(self.settings)
        self.changes_topic = changes_topic
        self.state_topic = state_topic
        self.timelines: dict[str, Timeline] = {}
        self._producer = Producer(self.settings.producer_config(bootstrap, **{"linger.ms": 20}))
        self._errors: list[KafkaError] = []

    def load(self, timeout: float = 60.0) -> int:
        """Read the state topic to its end; returns the number of subjects with a timeline."""
        consumer = Consumer(
            self.settings.kafka_config(
                self.bootstrap,
                **{
                    "group.id": f"consentgate-writer-load-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                },
            )
        )
        try:
            meta = consumer.list_topics(self.state_topic, timeout=timeout)
            parts = sorted(meta.topics[self.state_topic].partitions)
            ends = {
                p: consumer.get_watermark_offsets(
                    TopicPartition(self.state_topic, p), timeout=timeout
                )[1]
                for p in parts
            }
            todo = {p for p, end in ends.items() if end > 0}
            consumer.assign([TopicPartition(self.state_topic, p, 0) for p in todo])
            while todo:
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        todo.discard(msg.partition() or 0)
                        continue
                    raise ConsentgateError(f"reading {self.state_topic}: {err}")
                self._load_one(msg)
                if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                    todo.discard(msg.partition() or 0)
        finally:
            consumer.close()
        log.info(
            "consent writer loaded %d timelines from %s", len(self.timelines), self.state_topic
        )
        return len(self.timelines)

    def _load_one(self, msg: Message) -> None:
        subject = (msg.key() or b"").decode()
        if msg.value() is None:
            self.timelines.pop(subject, None)
            return
        record = self.serde.decode_model(
            msg.value(),
            ConsentTimeline,
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
        )
        self.timelines[subject] = Timeline(record)

    def write(self, change: ConsentChange) -> Timeline:
        """Log ``change`` and publish the subject's new timeline (not flushed: see flush).

        A change with the same effective time as one the subject's timeline already holds
        gets a ``recorded_time`` after that one's (by 1 ms if need be): the canonical order
        is ``(effective_time, recorded_time, change_id)`` and change ids are random, so two
        changes written in the same millisecond (a GRANT then an ERASE) would otherwise
        apply in either order.
        """
        current = self.timelines.get(change.subject_id)
        change = after_ties(change, current)
        timeline = apply(current, change)
        key = change.subject_id.encode()
        self._produce(self.changes_topic, key, self.serde.encode(change))
        if change.action is ConsentAction.ERASE and timeline.erased:
            self._produce(self.state_topic, key, None)  # erased: a tombstone
        elif timeline is not current:
            self._produce(self.state_topic, key, self.serde.encode(timeline.record))
        self.timelines[change.subject_id] = timeline
        return timeline

    def write_all(self, changes: Iterable[ConsentChange]) -> int:
        count = 0
        for change in changes:
            self.write(change)
            count += 1
        self.flush()
        return count

    def _produce(self, topic: str, key: bytes, value: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=self._on_ack)
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _on_ack(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(err)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every change is acknowledged; raise if any was not."""
        remaining = self._producer.flush(timeout)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise ConsentgateError(
                f"consent writes failed: {remaining} unacknowledged, errors: {errors[:3]}"
            )


def after_ties(change: ConsentChange, timeline: Timeline | None) -> ConsentChange:
    """``change``, recorded after every retained change with the same effective time."""
    if timeline is None:
        return change
    tied = [
        c.recorded_time
        for c in timeline.record.changes
        if c.effective_time == change.effective_time and c.change_id != change.change_id
    ]
    if not tied or change.recorded_time > max(tied):
        return change
    return change.model_copy(update={"recorded_time": max(tied) + timedelta(milliseconds=1)})


def new_change(
    subject_id: str,
    action: ConsentAction | str,
    purpose: str | None = None,
    recipient: str | None = None,
    *,
    at: datetime | None = None,
    method: str = "API",
    notice_version: str | None = None,
    expires_at: datetime | None = None,
) -> ConsentChange:
    """A change with a fresh id, effective and recorded ``at`` (default now)."""
    when = at or datetime.now(UTC)
    return ConsentChange(
        change_id=str(uuid.uuid4()),
        subject_id=subject_id,
        action=ConsentAction(action),
        purpose=purpose,
        recipient=recipient,
        effective_time=when,
        recorded_time=when,
        expires_at=expires_at,
        method=method,  # type: ignore[arg-type]  # pydantic coerces the enum's value
        notice_version=notice_version,
    )
