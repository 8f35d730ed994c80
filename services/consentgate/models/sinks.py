"""What sinks deliver: projected source records with purpose, recipient and consent
evidence, mirroring ``evidence.avsc``, ``browsing_sink_record.avsc`` and
``score_sink_record.avsc``.

Every projectable source field is optional: the projection leaves the fields a sink's
policy does not list at ``None``. ``subject_key`` is the sink-specific subject key (a
per-recipient pseudonym, the raw id where the policy allows, or ``None``).

On partner records the evidence identifies the event only within that recipient's records:
``event_id`` is the recipient-scoped id (``PseudonymKeys.scoped_event_id``) and the source
partition and offset are ``None``, so that two recipients cannot join their data on them.
"""

from __future__ import annotations

import uuid

import pydantic

from consentgate.models._base import AvroModel
from consentgate.models.events import (
    NAMESPACE,
    Device,
    EventType,
    NonEmptyStr,
    Offset,
    Partition,
    Purpose,
    Timestamp,
)

__all__ = ["BrowsingSinkRecord", "Evidence", "ScoreSinkRecord"]


class Evidence(AvroModel):
    """Why a record was allowed into a sink, and where it came from."""

    avro_name = f"{NAMESPACE}.Evidence"

    consent_change_id: NonEmptyStr
    consent_notice_version: str | None = None
    consent_method: str | None = None
    policy_version: NonEmptyStr
    source_topic: NonEmptyStr
    source_partition: Partition | None = None  # null on partner records (recipient-scoped)
    source_offset: Offset | None = None  # null on partner records
    event_id: uuid.UUID  # on partner records: the recipient-scoped id (UUIDv8)
    decided_at: Timestamp


class BrowsingSinkRecord(AvroModel):
    """A projected browsing event in a sink."""

    avro_name = f"{NAMESPACE}.BrowsingSinkRecord"

    event_id: uuid.UUID | None = None
    event_time: Timestamp | None = None
    session_id: str | None = None
    event_type: EventType | None = None
    page_url: str | None = None
    job_id: str | None = None
    company_id: str | None = None
    search_query: str | None = None
    referrer: str | None = None
    device: Device | None = None
    ip_address: str | None = None
    country: str | None = None
    gpc: bool | None = None
    subject_key: str | None = None
    purpose: Purpose
    recipient: str | None = None
    evidence: Evidence


class ScoreSinkRecord(AvroModel):
    """A projected derived score in a sink."""

    avro_name = f"{NAMESPACE}.ScoreSinkRecord"

    event_id: uuid.UUID | None = None
    event_time: Timestamp | None = None
    score_type: str | None = None
    score: pydantic.FiniteFloat | None = None
    model_version: str | None = None
    company_id: str | None = None
    features_window_start: Timestamp | None = None
    features_window_end: Timestamp | None = None
    subject_key: str | None = None
    purpose: Purpose
    recipient: str | None = None
    evidence: Evidence
