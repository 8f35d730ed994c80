"""``SinkConsumer``: read a consentgate sink the way its contract asks for.

What it guarantees to the callbacks, and why:

- **read_committed, always.** The router writes sinks in Kafka transactions; a
  ``read_uncommitted`` consumer sees records of aborted transactions, which never happened.
  A ``config`` that asks for another isolation level, for auto-commit or for another group
  is refused (ConfigError) rather than silently overridden.
- **Typed records.** A value becomes its pydantic model (``BrowsingSinkRecord`` /
  ``ScoreSinkRecord``) inside a :class:`~consentgate.client.messages.SinkMessage`; a null
  value becomes a :class:`~consentgate.client.messages.Retraction` for ``on_retraction``
  (delete everything under its key). A record that is not a sink record goes to
  ``on_error``; without one it raises its DecodeError (never skipped silently).
- **Duplicates dropped** by (topic, event id) within the process, bounded
  (:class:`~consentgate.client.dedup.EventMemory`); ``on_duplicate`` is told.
- **At least once, committed after the callbacks.** ``poll`` commits a partition's offset
  only past records whose callback returned. When a callback raises, the records handled
  before it are committed, the consumer is moved back to the record that failed (a later
  ``poll`` or the group's next owner gets it again) and the exception propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consentgate.client.dedup import EventMemory
from consentgate.client.messages import Retraction, SinkMessage, Undecodable, classify
from consentgate.errors import ConfigError
from consentgate.serde import Serde
from consentgate.settings import Settings

__all__ = ["SinkConsumer"]

log = logging.getLogger(__name__)

_FORCED: dict[str, Any] = {"isolation.level": "read_committed", "enable.auto.commit": False}


def _coords(msg: Message) -> tuple[str, int, int]:
    return str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)


def _same(name: str, given: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool):
        return str(given).strip().lower() == str(wanted).lower()
    return str(given).strip() == str(wanted)


def consumer_config(
    config: Mapping[str, Any] | None, group_id: str, *, from_beginning: bool
) -> dict[str, Any]:
    """The librdkafka configuration of a sink consumer: ``config`` (default: the cluster of
    ``CONSENTGATE_BOOTSTRAP``) with read_committed, manual commits and ``group_id``."""
    if config is None:
        settings = Settings()
        if not settings.bootstrap:
            raise ConfigError("no cluster: pass config= or set CONSENTGATE_BOOTSTRAP")
        config = settings.kafka_config()
    conf = dict(config)
    for name, wanted in _FORCED.items():
        if name in conf and not _same(name, conf[name], wanted):
            raise ConfigError(
                f"a sink consumer needs {name}={str(wanted).lower()}, got {conf[name]!r}"
            )
        conf[name] = wanted
    if conf.get("group.id", group_id) != group_id:
        raise ConfigError(f"group.id {conf['group.id']!r} in config differs from {group_id!r}")
    conf["group.id"] = group_id
    conf.setdefault("auto.offset.reset", "earliest" if from_beginning else "latest")
    return conf


class SinkConsumer:
    """A group consumer of one or more sink topics with typed callbacks.

    ``from_beginning`` applies where the group has no committed offset yet. ``commit=False``
    commits nothing (a throw-away reader). ``batch``: records per ``consume()`` call.
    """

    def __init__(
        self,
        topics: str | Sequence[str],
        group_id: str,
        *,
        on_record: Callable[[SinkMessage], object],
        on_retraction: Callable[[Retraction], object],
        on_error: Callable[[Undecodable], object] | None = None,
        on_duplicate: Callable[[SinkMessage], object] | None = None,
        config: Mapping[str, Any] | None = None,
        serde: Serde | None = None,
        from_beginning: bool = True,
        commit: bool = True,
        dedup_capacity: int = 100_000,
        batch: int = 500,
    ) -> None:
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        if not self.topics:
            raise ConfigError("a sink consumer needs at least one topic")
        if batch <= 0:
            raise ConfigError("batch must be positive")
        self._on_record = on_record
        self._on_retraction = on_retraction
        self._on_error = on_error
        self._on_duplicate = on_duplicate
        self._serde = serde if serde is not None else Serde.from_settings()
        self._commit_enabled = commit
        self._batch = batch
        self.memory = EventMemory(dedup_capacity)
        self.records = 0
        self.duplicates = 0
        self.retractions = 0
        self.errors = 0
        self._stopping = False
        conf = consumer_config(config, group_id, from_beginning=from_beginning)
        self._consumer: Consumer | None = Consumer(conf)
        self._consumer.subscribe(self.topics)

    # -- the loop ----------------------------------------------------------------------------
    def poll(self, timeout: float = 1.0, max_messages: int | None = None) -> int:
        """Handle what arrives within ``timeout`` (at most ``max_messages`` records): call the
        callbacks, then commit. Returns the number of records handled."""
        consumer = self._open()
        count = self._batch if max_messages is None else max(1, min(self._batch, max_messages))
        msgs = consumer.consume(count, timeout)
        done: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset
        try:
            for msg in msgs:
                if self._failed(msg):
                    continue
                self._handle(msg)
                topic, partition, offset = _coords(msg)
                done[(topic, partition)] = offset + 1
        except BaseException:
            try:
                self._commit(done)
            finally:
                self._rewind(msgs, done)
            raise
        self._commit(done)
        return sum(1 for m in msgs if m.error() is None)

    def run(self, poll_timeout: float = 0.5) -> None:
        """``poll`` until :meth:`stop` is called (from a callback, a signal handler or another
        thread) or a callback raises."""
        while not self._stopping:
            self.poll(poll_timeout)

    def stop(self) -> None:
        """Make :meth:`run` return after the batch in hand (safe from a signal handler)."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def close(self) -> None:
        """Leave the group (offsets are committed by every ``poll`` already)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()

    def __enter__(self) -> SinkConsumer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- inside ------------------------------------------------------------------------------
    def _open(self) -> Consumer:
        if self._consumer is None:
            raise ConfigError("the sink consumer is closed")
        return self._consumer

    def _failed(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return False
        if err.code() == KafkaError._PARTITION_EOF:
            return True
        if err.fatal():
            raise KafkaException(err)
        log.warning("sink consumer: %s (librdkafka retries)", err)
        return True

    def _handle(self, msg: Message) -> None:
        item = classify(self._serde, msg)
        if isinstance(item, Retraction):
            self._on_retraction(item)
            self.memory.forget_key(item.topic, item.key)
            self.retractions += 1
        elif isinstance(item, Undecodable):
            if self._on_error is None:
                raise item.error
            self._on_error(item)
            self.errors += 1
        elif self.memory.seen(item.topic, item.event_id):
            if self._on_duplicate is not None:
                self._on_duplicate(item)
            self.duplicates += 1
        else:
            self._on_record(item)
            self.memory.remember(item.topic, item.event_id, item.key)
            self.records += 1

    def _commit(self, done: dict[tuple[str, int], int]) -> None:
        if not done or not self._commit_enabled:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(done.items())]
        try:
            self._open().commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.fatal():
                raise
            # e.g. a rebalance took the partition: its next owner reads these records again
            log.warning("sink consumer: commit of %s failed: %s", offsets, exc)

    def _rewind(self, msgs: list[Message], done: dict[tuple[str, int], int]) -> None:
        """Move each partition of this batch back to its first record not handled."""
        first: dict[tuple[str, int], int] = {}
        for msg in msgs:
            if msg.error() is None:
                topic, partition, offset = _coords(msg)
                first.setdefault((topic, partition), offset)
        for tp, offset in first.items():
            target = done.get(tp, offset)
            try:
                self._open().seek(TopicPartition(tp[0], tp[1], target))
            except KafkaException as exc:  # not assigned any more: the next owner reads it
                log.warning("sink consumer: cannot rewind %s[%d] to %d: %s", *tp, target, exc)
