"""What a live sink holds: which events, under which keys (for ``--live`` and ``--dry-run``).

A sink record is identified by its event id (the ``cg-event-id`` header, else the value's
``evidence.event_id``), or, if it carries none, by its source coordinates (``cg-source`` /
the evidence's topic, partition and offset). A null value (a retraction) tells consumers to
delete everything under its key, so it ends the holding of every record before it under that
key (a key lives in one partition: per-partition order is the order consumers apply).

:class:`HeldIndex` is pure; :func:`read_held` fills one from a topic (read_committed). The
index keeps the key each record really has: retractions are written under it, so they reach
the data after a pseudonym key rotation or a policy change as well.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from consentgate.errors import DecodeError
from consentgate.ops.reader import read_topic
from consentgate.ops.replay_topics import partitions_of
from consentgate.policy import PseudonymKeys, Sink
from consentgate.router.outputs import HEADER
from consentgate.router.records import sink_event_id
from consentgate.serde import Serde

__all__ = [
    "EventRef",
    "HeldIndex",
    "Outcome",
    "classify",
    "headers_of",
    "identity_of",
    "ledger_subjects",
    "provision_ids",
    "read_held",
]

Outcome = Literal["add", "unchanged", "retract", "none"]


def classify(allowed: bool, held: bool) -> Outcome:
    """What a replay does with (event, sink): write it, leave it, retract it, or nothing."""
    if allowed:
        return "unchanged" if held else "add"
    return "retract" if held else "none"


class EventRef:
    """A source event as sinks may name it: per sink, its id there (partner sinks carry the
    recipient-scoped id, ``router.records.sink_event_id``) and its source coordinates."""

    __slots__ = ("_ids", "event_id", "subject", "where")

    def __init__(self, event_id: str | None, where: str, subject: str | None = None) -> None:
        self.event_id, self.where, self.subject = event_id, where, subject
        self._ids: dict[str, tuple[str, ...]] = {}

    def ids(self, sink: Sink, keys: PseudonymKeys) -> tuple[str, ...]:
        found = self._ids.get(sink.name)
        if found is None:
            src = "src:" + self.where
            found = (sink_event_id(sink, self.event_id, keys), src) if self.event_id else (src,)
            self._ids[sink.name] = found
        return found


class HeldIndex:
    """Event identity -> keys holding it, and key -> identities held under it; and, from
    the provision ledger (partner sinks), subject -> the keys they were provided under."""

    def __init__(self) -> None:
        self._keys: dict[str, set[bytes]] = {}
        self._held: dict[bytes, set[str]] = {}
        self._subjects: dict[str, set[bytes]] = {}
        self.oldest_ms: int | None = None  # the oldest held record's timestamp

    def data(self, key: bytes, identity: str, timestamp_ms: int | None = None) -> None:
        """A data record under ``key`` (its event id, or ``src:topic[p]@o``)."""
        self._keys.setdefault(identity, set()).add(key)
        self._held.setdefault(key, set()).add(identity)
        if timestamp_ms is not None and (self.oldest_ms is None or timestamp_ms < self.oldest_ms):
            self.oldest_ms = timestamp_ms

    def provided(self, subject: str, key: bytes) -> None:
        """The ledger says ``subject`` was provided to this sink under ``key``."""
        if key in self._held:
            self._subjects.setdefault(subject, set()).add(key)

    def subject_keys(self, subject: str | None) -> set[bytes]:
        """The keys the ledger names for ``subject`` that still hold something."""
        if subject is None:
            return set()
        return {k for k in self._subjects.get(subject, ()) if k in self._held}

    def retracted(self, key: bytes) -> set[str]:
        """A null record under ``key``: nothing before it is held any more; what was."""
        gone = self._held.pop(key, set())
        for identity in gone:
            keys = self._keys.get(identity)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys[identity]
        return gone

    def keys_of(self, identities: Iterable[str]) -> set[bytes]:
        out: set[bytes] = set()
        for identity in identities:
            out |= self._keys.get(identity, set())
        return out

    def holds(self, identities: Iterable[str]) -> bool:
        return any(identity in self._keys for identity in identities)

    def keys(self) -> set[bytes]:
        """Every key holding something."""
        return set(self._held)

    def __len__(self) -> int:
        return len(self._keys)


def read_held(kafka: Mapping[str, Any], topic: str, serde: Serde) -> HeldIndex:
    """The index of ``topic`` as it is now (an empty index if the topic does not exist)."""
    index = HeldIndex()
    if partitions_of(kafka, topic) is None:
        return index
    for msg in read_topic(dict(kafka), topic):
        key = msg.key()
        if key is None:
            continue
        if msg.value() is None:
            index.retracted(key)
            continue
        identity = identity_of(msg, serde)
        if identity is not None:
            ts_type, ts = msg.timestamp()
            index.data(key, identity, ts if ts_type and ts > 0 else None)
    return index


def identity_of(msg: Message, serde: Serde) -> str | None:
    """A sink record's event identity: its event id, else ``src:`` + its source."""
    headers = headers_of(msg)
    event_id = headers.get(HEADER.EVENT_ID)
    if event_id:
        return event_id
    try:
        value = serde.decode(msg.value()).value
    except DecodeError:
        return None  # not ours: nothing a replay could judge
    evidence = value.get("evidence") if isinstance(value, dict) else None
    if isinstance(evidence, dict):
        if evidence.get("event_id"):
            return str(evidence["event_id"])
        if evidence.get("source_topic") is not None:
            where = (
                f"{evidence['source_topic']}[{evidence['source_partition']}]"
                f"@{evidence['source_offset']}"
            )
            return "src:" + where
    source = headers.get(HEADER.SOURCE)
    return "src:" + source if source else None


def headers_of(msg: Message) -> dict[str, str]:
    """A consumed record's headers as text (the last value of a repeated name wins)."""
    raw: Any = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {str(name): _text(value) for name, value in pairs}


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


def provision_ids(
    kafka: Mapping[str, Any], topic: str, since: datetime | None, timeout: float = 60.0
) -> list[str]:
    """The keys (provision ids) of ``topic``'s committed records written at or after
    ``since`` (None: all); none if the topic does not exist."""
    if partitions_of(kafka, topic) is None:
        return []
    records = read_topic(dict(kafka), topic) if since is None else _read_since(kafka, topic, since)
    keys = (m.key() for m in records)
    return [k.decode() for k in keys if k]


def _read_since(
    kafka: Mapping[str, Any], topic: str, since: datetime, timeout: float = 60.0
) -> Iterator[Message]:
    """Every committed record of ``topic`` written at or after ``since``, present now."""
    count = partitions_of(kafka, topic) or 0
    consumer = Consumer(
        {
            **kafka,
            "group.id": f"consentgate-replay-ledger-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        ms = int(since.timestamp() * 1000)
        starts = consumer.offsets_for_times(
            [TopicPartition(topic, p, ms) for p in range(count)], timeout=timeout
        )
        todo = {tp.partition for tp in starts if tp.offset >= 0 and tp.offset != OFFSET_END}
        consumer.assign([tp for tp in starts if tp.partition in todo])
        while todo:
            for msg in consumer.consume(10_000, 1.0):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        todo.discard(msg.partition() or 0)
                        continue
                    raise KafkaException(err)
                yield msg
    finally:
        consumer.close()


def ledger_subjects(
    kafka: Mapping[str, Any], topic: str, serde: Serde, indexes: Mapping[str, HeldIndex]
) -> int:
    """Tell each partner sink's index (sink name -> index) which subject the ledger provided
    under each key it holds: how a record written under a former pseudonym key is known to
    be the subject's (its recipient-scoped event id cannot say). The ledger is read from the
    day of the oldest held record on (each day's first delivery has its provision); returns
    the provisions read."""
    oldest = [i.oldest_ms for i in indexes.values() if i.oldest_ms is not None]
    if not oldest or partitions_of(kafka, topic) is None:
        return 0
    day = datetime.fromtimestamp(min(oldest) / 1000, UTC).date()
    since = datetime.combine(day, datetime.min.time(), UTC)
    count = 0
    for msg in _read_since(kafka, topic, since):
        value = msg.value()
        if value is None:
            continue
        try:
            record = serde.decode(value).value
        except DecodeError:
            continue
        index = indexes.get(str(record.get("sink")))
        key, subject = record.get("subject_key"), record.get("subject_id")
        if index is not None and key and subject:
            index.provided(str(subject), str(key).encode())
            count += 1
    return count
