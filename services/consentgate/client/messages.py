"""What a sink consumer gets from one Kafka record: a sink record, a retraction, or a record
it cannot read.

The router writes two kinds of records into a sink topic (docs/consumers.md): a projected
event (``BrowsingSinkRecord`` / ``ScoreSinkRecord``, Avro) and a retraction, a record keyed
by the subject's sink key with a **null value** and a ``cg-retraction`` header. Any
null-valued record is read as a retraction, with or without the header: a consumer that
deletes on a null it does not understand loses a cache entry, one that ignores it may keep
personal data after a withdrawal. A value that does not decode, or decodes to another
record type, is :class:`Undecodable` (with the error, located at topic/partition/offset).

``classify`` is pure given the message (no I/O besides the serde's registry lookups).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from consentgate.errors import DecodeError
from consentgate.models.sinks import BrowsingSinkRecord, ScoreSinkRecord
from consentgate.router.outputs import HEADER
from consentgate.serde import Serde

__all__ = ["Retraction", "SinkMessage", "SinkRecord", "Undecodable", "classify"]

SinkRecord = BrowsingSinkRecord | ScoreSinkRecord
"""The value of a sink record, as its pydantic model."""

_SINK_MODELS = (BrowsingSinkRecord, ScoreSinkRecord)


@dataclass(frozen=True, slots=True)
class SinkMessage:
    """One delivered sink record and where it was."""

    topic: str
    partition: int
    offset: int
    key: str | None
    record: SinkRecord
    headers: Mapping[str, bytes] = field(default_factory=dict)
    timestamp: datetime | None = None

    @property
    def event_id(self) -> str:
        """The source event's id: the idempotency key of a store (``evidence.event_id``)."""
        return str(self.record.evidence.event_id)

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Retraction:
    """Delete everything held under ``key`` in ``topic``: consent for it was withdrawn
    (``reason`` ``withdrawn``) or the subject was erased (``erased``); ``unknown`` for a
    null value without the router's header."""

    topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    change_id: str | None
    purpose: str | None
    policy_version: str | None
    timestamp: datetime | None = None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A record whose value is not a sink record; ``error`` says why."""

    topic: str
    partition: int
    offset: int
    key: str | None
    error: DecodeError
    headers: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="backslashreplace")


def _headers(msg: Any) -> dict[str, bytes]:
    return {k: v for k, v in (msg.headers() or []) if v is not None}


def _timestamp(msg: Any) -> datetime | None:
    kind, millis = msg.timestamp()
    if kind == 0 or millis is None or millis < 0:  # TIMESTAMP_NOT_AVAILABLE
        return None
    return datetime.fromtimestamp(millis / 1000, UTC)


def classify(serde: Serde, msg: Any) -> SinkMessage | Retraction | Undecodable:
    """Read one confluent-kafka ``Message`` of a sink topic."""
    topic, partition, offset = str(msg.topic()), int(msg.partition()), int(msg.offset())
    key = _text(msg.key())
    headers = _headers(msg)
    raw = msg.value()
    if raw is None:
        return Retraction(
            topic,
            partition,
            offset,
            key,
            reason=_text(headers.get(HEADER.RETRACTION)) or "unknown",
            change_id=_text(headers.get(HEADER.CONSENT_CHANGE)),
            purpose=_text(headers.get(HEADER.PURPOSE)),
            policy_version=_text(headers.get(HEADER.POLICY_VERSION)),
            timestamp=_timestamp(msg),
        )
    try:
        record = serde.decode_model(raw, topic=topic, partition=partition, offset=offset)
    except DecodeError as exc:
        return Undecodable(topic, partition, offset, key, exc, headers)
    if not isinstance(record, _SINK_MODELS):
        error = DecodeError(
            f"not a sink record: a {record.avro_name}",
            raw=bytes(raw),
            topic=topic,
            partition=partition,
            offset=offset,
        )
        return Undecodable(topic, partition, offset, key, error, headers)
    return SinkMessage(topic, partition, offset, key, record, headers, _timestamp(msg))
