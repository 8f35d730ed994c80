"""The routing policy file, as validated pydantic models.

A policy declares purposes, recipients (third parties), sources (topic + schema + where the
subject, event time, event id and opt-out signals are in a record) and sinks (topic +
source + purpose [+ recipient] + projection). Shapes are checked here; references between
entries (a sink naming an undeclared recipient, a field its source lacks, ...) are checked by
:mod:`consentgate.policy.validate`. ``Policy.version`` is a hash of the canonical content, so
every record routed under a policy can cite exactly which one.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from typing import Annotated

import pydantic

from consentgate.models.consent import PurposeId, RecipientId

__all__ = [
    "FIRST_PARTY",
    "Defaults",
    "Policy",
    "Recipient",
    "Sink",
    "Source",
    "SubjectHandling",
    "TcfMapping",
]

FIRST_PARTY = "_first_party"
"""Pseudonym key name of first-party sinks (recipient ids cannot start with ``_``)."""

Name = Annotated[str, pydantic.StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,127}$")]
Topic = Annotated[str, pydantic.StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,249}$")]
FieldName = Annotated[str, pydantic.StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Signal = Annotated[str, pydantic.StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
Text = Annotated[str, pydantic.StringConstraints(min_length=1, strip_whitespace=True)]
SchemaName = Annotated[
    str, pydantic.StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
]


class _Entry(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class SubjectHandling(StrEnum):
    """What a sink gets instead of the raw subject id."""

    DROP = "drop"
    """No subject key at all: nothing per subject downstream, so nothing to retract."""
    PSEUDONYMIZE = "pseudonymize"
    """HMAC-SHA256 of the id under the recipient's key (first-party key for own sinks)."""
    KEEP_IF_NAMED_RECIPIENT = "keep_if_named_recipient"
    """The raw id, only when the grant relied on names this sink's recipient; else pseudonym."""


class Defaults(_Entry):
    """Timing knobs of the router and the consent writer."""

    clock_skew_seconds: Annotated[int, pydantic.Field(ge=0, le=3600)] = 30
    consent_wait_seconds: Annotated[float, pydantic.Field(gt=0, le=300)] = 5.0
    history_horizon_days: Annotated[int, pydantic.Field(ge=1, le=3650)] = 400

    @property
    def clock_skew(self) -> timedelta:
        return timedelta(seconds=self.clock_skew_seconds)

    @property
    def consent_wait(self) -> timedelta:
        return timedelta(seconds=self.consent_wait_seconds)

    @property
    def history_horizon(self) -> timedelta:
        return timedelta(days=self.history_horizon_days)


class Recipient(_Entry):
    """A third party that partner sinks deliver to (APPI: who received what)."""

    id: RecipientId
    name: Text
    address: Text
    country: Annotated[str, pydantic.StringConstraints(pattern=r"^[A-Z]{2}$")]


class Source(_Entry):
    """A raw topic and where the routing inputs are in its records."""

    name: Name
    topic: Topic
    schema_name: SchemaName = pydantic.Field(alias="schema")
    subject_field: FieldName = "subject_id"
    event_time_field: FieldName = "event_time"
    event_id_field: FieldName = "event_id"
    signal_fields: dict[Signal, FieldName] = pydantic.Field(default_factory=dict)
    """Opt-out signal name -> the record field whose truthy value raises it (gpc: gpc)."""


class Sink(_Entry):
    """A downstream topic: which source feeds it, under which consent, with which fields."""

    name: Name
    topic: Topic
    source: Name
    purpose: PurposeId
    recipient: RecipientId | None = None
    extra_purposes: tuple[PurposeId, ...] = ()
    fields: Annotated[tuple[FieldName, ...], pydantic.Field(min_length=1)]
    subject_id: SubjectHandling
    opt_out_signals: tuple[Signal, ...] = ()

    @property
    def is_partner(self) -> bool:
        return self.recipient is not None

    @property
    def grant_key(self) -> tuple[str, str | None]:
        """The grant this sink requires: (purpose, recipient), recipient None = first party."""
        return (self.purpose, self.recipient)

    @property
    def key_name(self) -> str:
        """Whose pseudonym key applies: the recipient id, or :data:`FIRST_PARTY`."""
        return self.recipient if self.recipient is not None else FIRST_PARTY

    @property
    def retractable(self) -> bool:
        """Whether per-subject retractions are possible (the sink keeps a subject key)."""
        return self.subject_id is not SubjectHandling.DROP


class TcfMapping(_Entry):
    """How IAB TCF v2.2 TC strings map onto our grant keys (:mod:`consentgate.consent.tcf`).

    A grant key (purpose, recipient) is covered by TCF only if its purpose is mapped here and
    its recipient is None (first party) or mapped to a GVL vendor id; others get nothing from
    a TC string. Ranges and references are checked by :mod:`consentgate.policy.validate`.
    """

    purposes: dict[PurposeId, Annotated[tuple[int, ...], pydantic.Field(min_length=1)]]
    """Our purpose -> the TCF purpose ids (1..11) that ALL must have consent."""
    vendors: dict[RecipientId, int] = pydantic.Field(default_factory=dict)
    """Recipient id -> its TCF (Global Vendor List) vendor id, whose consent is also needed."""
    min_policy_version: int = 4
    """The oldest TcfPolicyVersion accepted: TCF v2.2 strings carry 4 or later."""


class Policy(_Entry):
    """A whole routing policy file."""

    description: str = ""
    purposes: Annotated[dict[PurposeId, Text], pydantic.Field(min_length=1)]
    recipients: tuple[Recipient, ...] = ()
    sources: Annotated[tuple[Source, ...], pydantic.Field(min_length=1)]
    sinks: Annotated[tuple[Sink, ...], pydantic.Field(min_length=1)]
    defaults: Defaults = Defaults()
    tcf: TcfMapping | None = pydantic.Field(default=None, exclude_if=lambda v: v is None)
    """None: TC strings are refused. Left out of the dump when None, so policies without a
    tcf section keep the version they had before the section existed."""

    @cached_property
    def version(self) -> str:
        """sha256 of the canonical JSON of the validated content, first 12 hex digits."""
        canonical = json.dumps(
            self.model_dump(mode="json", by_alias=True),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]

    @cached_property
    def _index(self) -> _Index:
        return _Index(self)

    def source(self, name: str) -> Source:
        """The source called ``name`` (KeyError if none)."""
        return self._index.sources[name]

    def source_for_topic(self, topic: str) -> Source | None:
        return next((s for s in self.sources if s.topic == topic), None)

    def sink(self, name: str) -> Sink:
        """The sink called ``name`` (KeyError if none)."""
        return self._index.sinks[name]

    def recipient(self, recipient_id: str) -> Recipient:
        """The recipient with id ``recipient_id`` (KeyError if none)."""
        return self._index.recipients[recipient_id]

    def sinks_for(self, source: str) -> tuple[Sink, ...]:
        """The sinks fed by ``source``, in policy order."""
        return self._index.by_source.get(source, ())


class _Index:
    """Lookups by name, built once per policy."""

    def __init__(self, policy: Policy) -> None:
        self.sources = {s.name: s for s in policy.sources}
        self.sinks = {k.name: k for k in policy.sinks}
        self.recipients = {r.id: r for r in policy.recipients}
        by_source: dict[str, list[Sink]] = {}
        for sink in policy.sinks:
            by_source.setdefault(sink.source, []).append(sink)
        self.by_source = {name: tuple(sinks) for name, sinks in by_source.items()}
