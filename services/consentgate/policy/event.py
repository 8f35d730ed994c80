"""The event as the decision function sees it, whatever its source schema.

The router decodes a record (a dict from fastavro, or a model's ``to_avro()``) and builds a
:class:`SourceEvent` with the source's field mapping from the policy: where the event id,
subject id and event time are, and which fields raise which opt-out signal. Building never
fails: anything missing or unreadable becomes None, and :meth:`SourceEvent.problem` (hence
``decide``) reports the event as invalid, so the router can dead-letter it with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from consentgate.policy.model import Source

__all__ = ["SourceEvent"]

_FALSE_STRINGS = frozenset({"", "0", "false", "no", "off"})
_MIN_MS = -62135596800000  # 0001-01-01T00:00:00Z
_MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """One source record: routing coordinates, all its fields, and its opt-out signals."""

    source: str
    event_id: str | None
    subject_id: str | None
    event_time: datetime | None
    fields: Mapping[str, Any] = field(default_factory=dict)
    signals: frozenset[str] = frozenset()

    @classmethod
    def from_record(cls, source: Source, record: Mapping[str, Any]) -> SourceEvent:
        """Read the routing inputs of ``record`` with ``source``'s field mapping.

        Event ids may be str or UUID; times an aware datetime, epoch milliseconds or an ISO
        8601 string with offset (naive times are rejected: their zone is unknown). A signal
        is raised unless its field is absent/None or clearly false (False, 0, "", "0",
        "false", "no", "off"): unknown values count as an opt-out, failing closed.
        """
        signals = frozenset(
            name for name, fname in source.signal_fields.items() if _raised(record.get(fname))
        )
        return cls(
            source=source.name,
            event_id=_text(record.get(source.event_id_field)),
            subject_id=_text(record.get(source.subject_field)),
            event_time=_timestamp(record.get(source.event_time_field)),
            fields=record,
            signals=signals,
        )

    def problem(self, now: datetime, clock_skew: timedelta) -> str | None:
        """Why the event is invalid (missing coordinates, too far in the future), or None."""
        if not self.event_id:
            return "missing event id"
        if not self.subject_id:
            return "missing subject id"
        if self.event_time is None:
            return "missing or unreadable event time"
        if self.event_time > now + clock_skew:
            ahead = (self.event_time - now).total_seconds()
            return (
                f"event time {self.event_time.isoformat()} is {ahead:.3f} s ahead of now "
                f"(clock skew allowed: {clock_skew.total_seconds():g} s)"
            )
        return None


def _text(value: object) -> str | None:
    if value is None or isinstance(value, (bytes, bool, dict, list)):
        return None
    text = str(value)  # str, uuid.UUID, int ids
    return text or None


def _timestamp(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo is not None else None
    if isinstance(value, int) and not isinstance(value, bool):
        if not _MIN_MS <= value <= _MAX_MS:
            return None
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    return None


def _raised(value: object) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    return True
