"""The judge: one parsed event + what the consent view holds -> the records to write. Pure.

Every fail-closed mapping of the router lives here, in this order:

1. ``misrouted``: the event sits on partition P but its subject belongs to partition E
   (murmur2 of the subject id): partition P's view cannot judge it. Every sink is denied
   as ``misrouted`` and the raw record is dead-lettered with the expected partition. On
   the right partition but keyed by something else (or nothing): dead-lettered as
   ``KeyMismatch``.
2. ``consent_state_stale``: the gate gave up waiting for a view as new as the event (and
   for ``consent.changes`` read up to the event's time), or for the view to show a change
   of the subject already read from ``consent.changes``.
3. ``erased``: the view holds a tombstone for the subject.
4. ``consent_unreadable``: the subject's record cannot be decoded.
5. otherwise the policy's rule over the subject's timeline (or none: ``no_consent_record``).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from consentgate.errors import DecodeError
from consentgate.policy import ReasonCode
from consentgate.router.gate import GateVerdict
from consentgate.router.partitioner import SubjectPartitioner
from consentgate.router.plan import Parsed, RoutePlan, Router
from consentgate.router.view import ConsentLookup

__all__ = ["Judge"]


class Judge:
    """Holds the core (policy, serde, keys) and the partition count; no I/O."""

    def __init__(self, core: Router, partitions: int) -> None:
        self.core = core
        self.partitions = partitions
        self.partition_of = SubjectPartitioner(partitions)

    def misplaced(self, parsed: Parsed, now: datetime) -> RoutePlan | None:
        """The plan of an event that is not where and how its subject's consent is: on
        another partition (every sink denied as ``misrouted`` + a dead letter), or there but
        not keyed by its subject id (a ``KeyMismatch`` dead letter: a producer that does not
        key by subject spreads the subject over partitions); None for a well-placed event."""
        subject = (parsed.event.subject_id or "").encode()
        expected = self.partition_of(subject)
        rec = parsed.rec
        if expected == rec.partition:
            if rec.key == subject:
                return None
            letter = self.core.dead_letter(rec, now, "validate", KeyMismatch(_key_problem(rec.key)))
            return RoutePlan((letter,), None, dead_letter=True)
        plan = self.core.plan(parsed, None, now, override=ReasonCode.MISROUTED)
        reason = (
            f"subject {parsed.event.subject_id!r} belongs to partition {expected} "
            f"(murmur2 of the subject id), the record is on partition {rec.partition} "
            f"(key {rec.key!r}); expected_partition={expected}"
        )
        letter = self.core.dead_letter(rec, now, "route", Misrouted(reason))
        return dataclasses.replace(plan, outputs=(*plan.outputs, letter), dead_letter=True)

    def judge(
        self,
        parsed: Parsed,
        verdict: GateVerdict,
        lookup: ConsentLookup,
        now: datetime,
        *,
        uncached: bool = False,
    ) -> RoutePlan:
        """The plan of an event on its subject's partition, after the gate."""
        override: ReasonCode | None = None
        timeline = None
        subject = (parsed.event.subject_id or "").encode()
        if verdict is not GateVerdict.READY:
            override = ReasonCode.CONSENT_STATE_STALE
        elif lookup.state == "erased":
            override = ReasonCode.ERASED
        elif lookup.state == "present":
            try:
                timeline = self.core.timeline(lookup.raw, subject)
            except DecodeError:
                override = ReasonCode.CONSENT_UNREADABLE
        if uncached:
            return self.core.plan_uncached(parsed, timeline, now, override=override)
        return self.core.plan(parsed, timeline, now, override=override)


class Misrouted(Exception):
    """Dead-letter error type ``Misrouted``."""


class KeyMismatch(Exception):
    """Dead-letter error type ``KeyMismatch``."""


def _key_problem(key: bytes | None) -> str:
    if key is None:
        return "no key: a source record must be keyed by its subject id"
    shown = key[:64].decode("utf-8", "backslashreplace")
    return f"the record key {shown!r} is not its subject id"
