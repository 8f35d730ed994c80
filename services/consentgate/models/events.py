"""Source records: browsing events and derived scores, mirroring ``browsing_event.avsc``
and ``derived_score.avsc``.

Also home of the field types the other record models share (timestamps, partitions,
offsets, purposes), so every model validates them the same way.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Annotated, Self

import pydantic

from consentgate.models._base import AvroModel

__all__ = [
    "NAMESPACE",
    "BrowsingEvent",
    "DerivedScore",
    "Device",
    "EventType",
    "NonEmptyStr",
    "Offset",
    "Partition",
    "Purpose",
    "Timestamp",
]

NAMESPACE = "dev.consentgate.v1"


def _utc_millis(value: datetime) -> datetime:
    """UTC, truncated to the millisecond: exactly what timestamp-millis keeps."""
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


# Aware datetime, normalized to UTC milliseconds so a model round-trips through Avro unchanged.
Timestamp = Annotated[pydantic.AwareDatetime, pydantic.AfterValidator(_utc_millis)]
NonEmptyStr = Annotated[str, pydantic.StringConstraints(min_length=1)]
Partition = Annotated[int, pydantic.Field(ge=0, le=2**31 - 1)]
Offset = Annotated[int, pydantic.Field(ge=0, le=2**63 - 1)]
Purpose = Annotated[str, pydantic.StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]


class EventType(enum.StrEnum):
    """What the visitor did (Avro enum ``EventType``)."""

    PAGE_VIEW = "PAGE_VIEW"
    SEARCH = "SEARCH"
    JOB_VIEW = "JOB_VIEW"
    COMPANY_VIEW = "COMPANY_VIEW"
    BOOKMARK = "BOOKMARK"
    APPLY = "APPLY"
    OFFER_RESPONSE = "OFFER_RESPONSE"
    LOGIN = "LOGIN"


class Device(AvroModel):
    """Client device description."""

    avro_name = f"{NAMESPACE}.Device"

    user_agent: str | None = None
    device_type: str | None = None
    os: str | None = None


class BrowsingEvent(AvroModel):
    """One browsing event as the job site emits it."""

    avro_name = f"{NAMESPACE}.BrowsingEvent"

    event_id: uuid.UUID
    subject_id: NonEmptyStr
    event_time: Timestamp
    session_id: str | None = None
    event_type: EventType
    page_url: str | None = None
    job_id: str | None = None
    company_id: str | None = None
    search_query: str | None = None
    referrer: str | None = None
    device: Device | None = None
    ip_address: str | None = None
    country: str | None = None
    gpc: bool = False


class DerivedScore(AvroModel):
    """A model's score about a subject, e.g. an offer-decline probability."""

    avro_name = f"{NAMESPACE}.DerivedScore"

    event_id: uuid.UUID
    subject_id: NonEmptyStr
    event_time: Timestamp
    score_type: NonEmptyStr
    score: pydantic.FiniteFloat
    model_version: NonEmptyStr
    company_id: str | None = None
    features_window_start: Timestamp | None = None
    features_window_end: Timestamp | None = None

    @pydantic.model_validator(mode="after")
    def _window_in_order(self) -> Self:
        start, end = self.features_window_start, self.features_window_end
        if start is not None and end is not None and start > end:
            raise ValueError(f"features_window_start {start} is after features_window_end {end}")
        return self
