"""Consent changes on the router's changes partitions: each is *unsettled* until the consent
view shows it; withdrawals and erasures then turn into retractions (see pending.py for why
that order).

A change that cannot be decoded is dead-lettered (stage ``consent``). A change the fold
rejects (consent/accept.py: not keyed by its subject, on another partition than its
subject's, a backdated grant) never reaches the view, so nothing waits for it: a
withdrawal or erasure among them is dead-lettered (its retractions could never be ordered
after the data), the others are the fold's dead letters only.

A change the view already shows when it is read (a router reading a consent.changes backlog
at start: nearly all of it is in consent-state already) holds nobody: it is :class:`Shown`
and only keeps its place in the log order for its retractions. Holding those subjects until
the queue reached them denied the events of every subject with a change in the backlog as
stale (the full demo: 82,488 of 82,488).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from confluent_kafka import Message

from consentgate.consent.accept import Rejected, rejection
from consentgate.errors import DecodeError
from consentgate.models.consent import ConsentChange
from consentgate.router.pending import retracting, view_shows
from consentgate.router.plan import NamedRejection, RoutePlan
from consentgate.router.retract import retractions

if TYPE_CHECKING:
    from consentgate.router.loop import RouterLoop

__all__ = ["Refused", "Shown", "read_change", "work_changes"]


@dataclass(frozen=True, slots=True)
class Refused:
    """A decoded change the fold will not fold."""

    change: ConsentChange
    why: Rejected


@dataclass(frozen=True, slots=True)
class Shown:
    """A change the consent view showed already when it was read: settled on arrival."""

    change: ConsentChange


def read_change(loop: RouterLoop, m: Message) -> ConsentChange | Shown | DecodeError | Refused:
    """The change of ``m``; an accepted one the view does not show yet holds its subject
    until it does."""
    try:
        change = loop.judge.core.serde.decode_model(
            m.value(),
            ConsentChange,
            topic=m.topic(),
            partition=m.partition(),
            offset=m.offset(),
        )
    except DecodeError as exc:
        return exc
    partition: int = m.partition()  # type: ignore[assignment]  # a record's
    why = rejection(m.key(), change, partition, loop.judge.partitions)
    if why is not None:
        return Refused(change, why)
    if _shown(loop, partition, change):
        return Shown(change)
    loop.unsettled[partition].add(change.subject_id.encode())
    return change


def _shown(loop: RouterLoop, partition: int, change: ConsentChange) -> bool:
    core = loop.judge.core
    subject = change.subject_id.encode()
    lookup = loop.view.lookup(partition, subject)
    try:
        timeline = core.timeline(lookup.raw, subject) if lookup.state == "present" else None
        return view_shows(change, lookup, timeline)
    except DecodeError:
        return True  # unreadable: every event of the subject is denied anyway


def work_changes(
    loop: RouterLoop, key: tuple[str, int], queue: deque[list[Any]], now: datetime
) -> None:
    """Settle the partition's changes in log order; stop at the first the view lacks."""
    partition = key[1]
    core = loop.judge.core
    while queue:
        _m, _arrival, rec, change = queue[0]
        if isinstance(change, DecodeError):
            letter = core.dead_letter(rec, now, "consent", change)
            loop.emitter.emit(RoutePlan((letter,), None, dead_letter=True), rec, partition)
        elif isinstance(change, Refused):
            if retracting(change.change):
                why = NamedRejection(change.why.error_type, _refused(change))
                letter = core.dead_letter(rec, now, "consent", why)
                loop.emitter.emit(RoutePlan((letter,), None, dead_letter=True), rec, partition)
        elif isinstance(change, Shown):
            if retracting(change.change):
                outs = retractions(core.policy, change.change, core.keys)
                loop.emitter.emit_retractions(outs, change.change, rec.where)
        else:
            subject = change.subject_id.encode()
            if not _shown(loop, partition, change):
                loop.s.note_unsettled(change, rec.where)
                return  # later changes of this partition wait: settle in log order
            if retracting(change):
                outs = retractions(core.policy, change, core.keys)
                loop.emitter.emit_retractions(outs, change, rec.where)
            loop.unsettled[partition].settle(subject)
            loop.s.note_settled(change)
        queue.popleft()
        loop.offsets[key] = rec.offset + 1


def _refused(refused: Refused) -> str:
    change = refused.change
    return (
        f"consent change {change.change_id} of {change.subject_id!r}: {refused.why.reason}; "
        "the fold rejects it, no consent view can show it, its retractions cannot be ordered"
    )
