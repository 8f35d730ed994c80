"""The router's own records: decisions, the provision ledger and dead letters, mirroring
``decision_record.avsc``, ``provision_record.avsc`` and ``dead_letter.avsc``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import date, datetime

import pydantic

from consentgate.errors import DecodeError
from consentgate.models._base import AvroModel
from consentgate.models.events import NAMESPACE, NonEmptyStr, Offset, Partition, Purpose, Timestamp

__all__ = ["DeadLetter", "DecisionRecord", "Header", "ProvisionRecord", "SinkOutcome"]


class SinkOutcome(AvroModel):
    """The decision for one sink."""

    avro_name = f"{NAMESPACE}.SinkOutcome"

    sink: NonEmptyStr
    allowed: bool
    reason: NonEmptyStr
    evidence_change_id: str | None = None


class DecisionRecord(AvroModel):
    """One decodable source event and every sink's outcome."""

    avro_name = f"{NAMESPACE}.DecisionRecord"

    event_id: uuid.UUID
    source_topic: NonEmptyStr
    source_partition: Partition
    source_offset: Offset
    subject_id: NonEmptyStr
    event_time: Timestamp
    decided_at: Timestamp
    policy_version: NonEmptyStr
    consent_version: pydantic.NonNegativeInt | None = None
    outcomes: list[SinkOutcome]


class ProvisionRecord(AvroModel):
    """Third-party provision ledger entry: one per subject, recipient, sink and UTC day."""

    avro_name = f"{NAMESPACE}.ProvisionRecord"

    provision_id: NonEmptyStr
    provision_date: date
    recipient_id: NonEmptyStr
    recipient_name: NonEmptyStr
    recipient_address: NonEmptyStr
    recipient_country: NonEmptyStr
    subject_id: NonEmptyStr
    subject_key: str | None = None
    sink: NonEmptyStr
    purpose: Purpose
    data_items: list[NonEmptyStr]
    consent_change_id: NonEmptyStr
    consent_notice_version: str | None = None
    consent_method: str | None = None
    consent_confirmed_at: Timestamp
    first_event_id: uuid.UUID
    policy_version: NonEmptyStr

    @staticmethod
    def make_id(recipient_id: str, subject_id: str, sink: str, provision_date: date) -> str:
        """The deterministic provision id: sha256 hex of the four key parts."""
        key = "\x1f".join((recipient_id, subject_id, sink, provision_date.isoformat()))
        return hashlib.sha256(key.encode("utf-8")).hexdigest()


class Header(AvroModel):
    """One Kafka header of a dead-lettered record."""

    avro_name = f"{NAMESPACE}.Header"

    key: str
    value: bytes | None = None


class DeadLetter(AvroModel):
    """A source record that could not be processed, with its raw bytes and why."""

    avro_name = f"{NAMESPACE}.DeadLetter"

    source_topic: NonEmptyStr
    source_partition: Partition
    source_offset: Offset
    source_timestamp: Timestamp | None = None
    raw_key: bytes | None = None
    raw_value: bytes | None = None
    error_type: NonEmptyStr
    reason: NonEmptyStr
    stage: NonEmptyStr
    failed_at: Timestamp
    headers: list[Header] = pydantic.Field(default_factory=list)

    @classmethod
    def for_decode_error(
        cls,
        error: DecodeError,
        *,
        failed_at: datetime,
        raw_key: bytes | None = None,
        headers: Iterable[tuple[str, bytes | None]] = (),
        source_timestamp: datetime | None = None,
    ) -> DeadLetter:
        """The dead letter of a located DecodeError (stage ``decode``)."""
        if error.topic is None or error.partition is None or error.offset is None:
            raise ValueError("a dead letter needs the topic, partition and offset of the error")
        return cls(
            source_topic=error.topic,
            source_partition=error.partition,
            source_offset=error.offset,
            source_timestamp=source_timestamp,
            raw_key=raw_key,
            raw_value=error.raw,
            error_type=type(error).__name__,
            reason=error.reason,
            stage="decode",
            failed_at=failed_at,
            headers=[Header(key=k, value=v) for k, v in headers],
        )
