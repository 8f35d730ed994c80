"""Projection: what an allowed event becomes in a sink. Pure, no I/O.

A sink record holds only the fields the sink lists (every other field of the source is
absent), plus ``purpose``, ``recipient`` and ``subject_key``: the subject as this sink knows
them, by the sink's ``subject_id`` handling:

- ``drop``: None. The sink holds nothing per subject, so it cannot be retracted per subject
  (withdrawal and erasure only stop new data): ``policy check`` warns about such sinks;
- ``pseudonymize``: the pseudonym under the sink's key (its recipient's, or the first
  party's for own sinks);
- ``keep_if_named_recipient``: the raw subject id if the grant the event was allowed on names
  this sink's recipient, else the pseudonym. ``decide`` allows a partner sink only on a grant
  for (purpose, that recipient), so on partner sinks this means identifiable provision on a
  recipient-specific consent (what APPI art. 31 asks for personally referable data); the
  pseudonym branch guards against evidence of another grant being passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from consentgate.consent.intervals import Evidence
from consentgate.policy.event import SourceEvent
from consentgate.policy.model import Sink, SubjectHandling
from consentgate.policy.pseudonym import PseudonymKeys

__all__ = ["RESERVED_FIELDS", "project", "pseudonym_key_names", "retraction_key", "subject_key"]

RESERVED_FIELDS = frozenset({"purpose", "recipient", "subject_key", "evidence"})
"""Names a projection adds; a sink may not list them as fields."""


def project(
    event: SourceEvent, sink: Sink, evidence: Evidence, keys: PseudonymKeys
) -> dict[str, Any]:
    """The sink's view of an allowed event: listed fields + purpose, recipient, subject_key."""
    if event.subject_id is None:
        raise ValueError("cannot project an event without a subject id")
    fields = event.fields
    record = {name: fields.get(name) for name in sink.fields}
    record["purpose"] = sink.purpose
    record["recipient"] = sink.recipient
    record["subject_key"] = subject_key(sink, event.subject_id, evidence, keys)
    return record


def subject_key(sink: Sink, subject_id: str, evidence: Evidence, keys: PseudonymKeys) -> str | None:
    """The subject's key in ``sink`` for a record allowed on ``evidence``."""
    handling = sink.subject_id
    if handling is SubjectHandling.DROP:
        return None
    if (
        handling is SubjectHandling.KEEP_IF_NAMED_RECIPIENT
        and sink.recipient is not None
        and evidence.recipient == sink.recipient
    ):
        return subject_id
    return keys.pseudonym(sink.key_name, subject_id)


def retraction_key(sink: Sink, subject_id: str, keys: PseudonymKeys) -> str | None:
    """The key a retraction (null value) for ``subject_id`` is written under in ``sink``.

    None for ``drop`` sinks, which cannot be retracted per subject. For
    ``keep_if_named_recipient`` on a partner sink it is the raw id: every record it holds was
    allowed on a grant naming that recipient (see the module docstring).
    """
    handling = sink.subject_id
    if handling is SubjectHandling.DROP:
        return None
    if handling is SubjectHandling.KEEP_IF_NAMED_RECIPIENT and sink.recipient is not None:
        return subject_id
    return keys.pseudonym(sink.key_name, subject_id)


def pseudonym_key_names(sinks: Iterable[Sink]) -> set[str]:
    """The pseudonym keys ``sinks`` may need: check them at startup with ``keys.check``."""
    return {sink.key_name for sink in sinks if sink.subject_id is not SubjectHandling.DROP}
