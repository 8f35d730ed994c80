"""What the router writes: one value object per Kafka record, and the topic names.

Keys are deterministic so that a re-delivery after a crash writes the same records again
(consumers deduplicate on the ``cg-event-id`` header / ``evidence.event_id``):

| topic            | key                                        | value                |
|------------------|--------------------------------------------|----------------------|
| a sink           | the sink's subject key (pseudonym or id);  | BrowsingSinkRecord / |
|                  | the event id where the sink drops ids      | ScoreSinkRecord      |
| a sink (retract) | the sink's subject key                     | null + reason header |
| decisions        | event id                                   | DecisionRecord       |
| provisions       | provision id (recipient, subject, sink, day) | ProvisionRecord    |
| dead letters     | the raw key (or topic/partition/offset)    | DeadLetter           |
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HEADER", "Output", "OutputTopics"]


class HEADER:
    """Header names on records the router writes (documented for consumers)."""

    PURPOSE = "cg-purpose"
    RECIPIENT = "cg-recipient"
    EVENT_ID = "cg-event-id"
    POLICY_VERSION = "cg-policy-version"
    CONSENT_CHANGE = "cg-consent-change-id"
    SOURCE = "cg-source"  # topic[partition]@offset
    RETRACTION = "cg-retraction"  # reason of a retraction (withdrawn, erased)


@dataclass(frozen=True, slots=True)
class Output:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class OutputTopics:
    """The router's own topics (sink topics come from the policy)."""

    decisions: str = "consentgate.decisions.v1"
    provisions: str = "consentgate.provisions.v1"
    dead_letters: str = "consentgate.dlq.v1"
