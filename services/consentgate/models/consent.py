"""Pydantic mirrors of ``schemas/consent_change.avsc`` and ``schemas/consent_timeline.avsc``.

These are data only: how a timeline is built from changes and queried lives in
:mod:`consentgate.consent`. Validation here enforces the per-change rules of the data model:

- GRANT and WITHDRAW name a purpose; ERASE names neither purpose nor recipient;
- only a GRANT may carry ``expires_at``, and it must be after ``effective_time``;
- ``tcf_string`` only with method TCF;
- timestamps are aware, normalized to UTC and truncated to milliseconds, so that a model
  equals itself after an Avro (timestamp-millis) round trip.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

import pydantic

from consentgate.models._base import AvroModel

__all__ = [
    "PURPOSE_PATTERN",
    "RECIPIENT_PATTERN",
    "ConsentAction",
    "ConsentChange",
    "ConsentMethod",
    "ConsentTimeline",
    "PurposeId",
    "RecipientId",
    "TimelineChange",
    "UtcMillis",
]

PURPOSE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
"""A purpose id: lowercase identifier (``analytics``, ``partner_sharing``, ``profiling``)."""

RECIPIENT_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
"""A recipient id (``acme-corp``); never starts with ``_`` (reserved for first-party keys)."""


def _utc_millis(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


UtcMillis = Annotated[pydantic.AwareDatetime, pydantic.AfterValidator(_utc_millis)]
"""An aware timestamp, normalized to UTC at millisecond precision (Avro timestamp-millis)."""

PurposeId = Annotated[str, pydantic.StringConstraints(pattern=PURPOSE_PATTERN)]
RecipientId = Annotated[str, pydantic.StringConstraints(pattern=RECIPIENT_PATTERN)]
NonEmpty = Annotated[str, pydantic.StringConstraints(min_length=1)]


class ConsentAction(StrEnum):
    GRANT = "GRANT"
    WITHDRAW = "WITHDRAW"
    ERASE = "ERASE"


class ConsentMethod(StrEnum):
    WEB_FORM = "WEB_FORM"
    API = "API"
    GPC = "GPC"
    TCF = "TCF"
    IMPORT = "IMPORT"
    CLI = "CLI"


class _ChangeBody(AvroModel):
    """The fields and rules shared by a logged change and a change retained in a timeline."""

    change_id: NonEmpty
    action: ConsentAction
    purpose: PurposeId | None = None
    recipient: RecipientId | None = None
    effective_time: UtcMillis
    expires_at: UtcMillis | None = None
    recorded_time: UtcMillis
    notice_version: str | None = None
    method: ConsentMethod
    actor: str | None = None
    tcf_string: str | None = None

    @pydantic.model_validator(mode="after")
    def _check_action_rules(self) -> Self:
        if self.action is ConsentAction.ERASE:
            if self.purpose is not None or self.recipient is not None:
                raise ValueError("an ERASE change names neither purpose nor recipient")
        elif self.purpose is None:
            raise ValueError(f"a {self.action} change needs a purpose")
        if self.expires_at is not None:
            if self.action is not ConsentAction.GRANT:
                raise ValueError("only a GRANT change may carry expires_at")
            if self.expires_at <= self.effective_time:
                raise ValueError("expires_at must be after effective_time")
        if self.tcf_string is not None and self.method is not ConsentMethod.TCF:
            raise ValueError("tcf_string is only allowed with method TCF")
        return self

    @property
    def order_key(self) -> tuple[datetime, datetime, str]:
        """Canonical order of changes: (effective_time, recorded_time, change_id)."""
        return (self.effective_time, self.recorded_time, self.change_id)

    @property
    def grant_key(self) -> tuple[str, str | None] | None:
        """(purpose, recipient) for GRANT/WITHDRAW; None for ERASE."""
        return None if self.purpose is None else (self.purpose, self.recipient)


class ConsentChange(_ChangeBody):
    """One append-only consent log entry (``consent.changes.v1``)."""

    avro_name: ClassVar[str] = "dev.consentgate.v1.ConsentChange"

    subject_id: NonEmpty


class TimelineChange(_ChangeBody):
    """A change as retained inside a :class:`ConsentTimeline` (subject id is the timeline's)."""

    avro_name: ClassVar[str] = "dev.consentgate.v1.TimelineChange"

    @classmethod
    def of(cls, change: ConsentChange) -> TimelineChange:
        """``change`` without its subject id (already validated by the same rules)."""
        return cls.model_construct(**{name: getattr(change, name) for name in cls.model_fields})

    def for_subject(self, subject_id: str) -> ConsentChange:
        return ConsentChange.model_validate({**self.model_dump(), "subject_id": subject_id})


class ConsentTimeline(AvroModel):
    """The compacted per-subject consent state (``consent.state.v1``).

    Invariants (checked): ``changes`` sorted canonically and unique by id; at most one ERASE,
    and it is the first change; ``erased_at`` is that ERASE's effective time.
    """

    avro_name: ClassVar[str] = "dev.consentgate.v1.ConsentTimeline"

    subject_id: NonEmpty
    version: Annotated[int, pydantic.Field(ge=0)]
    updated_at: UtcMillis
    erased_at: UtcMillis | None = None
    trimmed_before: UtcMillis | None = None
    changes: tuple[TimelineChange, ...] = ()
    erased_change_ids: tuple[str, ...] = ()

    @pydantic.model_validator(mode="after")
    def _check_invariants(self) -> Self:
        keys = [c.order_key for c in self.changes]
        if keys != sorted(keys) or len({c.change_id for c in self.changes}) != len(keys):
            raise ValueError("changes must be sorted canonically and unique by change_id")
        erases = [i for i, c in enumerate(self.changes) if c.action is ConsentAction.ERASE]
        if erases not in ([], [0]):
            raise ValueError("only one ERASE is retained and it precedes every other change")
        expected = self.changes[0].effective_time if erases else None
        if self.erased_at != expected:
            raise ValueError("erased_at must be the effective time of the retained ERASE")
        if list(self.erased_change_ids) != sorted(set(self.erased_change_ids)):
            raise ValueError("erased_change_ids must be sorted and unique")
        return self

    def to_avro(self) -> dict[str, Any]:
        """As the base, with arrays as lists (the ``avro`` library accepts only lists)."""
        data = self.model_dump(mode="python")
        data["changes"] = list(data["changes"])
        data["erased_change_ids"] = list(data["erased_change_ids"])
        return data
