"""Consent changes on the router's changes partitions: withdrawals and erasures turn into
retractions once the consent view shows them (see pending.py for why that order).

A change that cannot be decoded is dead-lettered (stage ``consent``); a withdrawal or erasure
on another partition than its subject's is dead-lettered as misrouted (no view could ever
show it, so its retractions could not be ordered after the data).
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any

from confluent_kafka import Message

from consentgate.errors import DecodeError
from consentgate.models.consent import ConsentChange
from consentgate.router.judge import Misrouted
from consentgate.router.pending import retracting, view_shows
from consentgate.router.plan import RoutePlan
from consentgate.router.retract import retractions

if TYPE_CHECKING:
    from consentgate.router.loop import RouterLoop

__all__ = ["read_change", "work_changes"]


def read_change(loop: RouterLoop, m: Message) -> ConsentChange | DecodeError:
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
    if retracting(change):
        loop.unsettled[m.partition()].add(change.subject_id.encode())  # type: ignore[index]
    return change


def work_changes(
    loop: RouterLoop, key: tuple[str, int], queue: deque[list[Any]], now: datetime
) -> None:
    partition = key[1]
    core = loop.judge.core
    while queue:
        _m, _arrival, rec, change = queue[0]
        if isinstance(change, DecodeError):
            letter = core.dead_letter(rec, now, "consent", change)
            loop.emitter.emit(RoutePlan((letter,), None, dead_letter=True), rec, partition)
        elif (
            retracting(change) and loop.judge.partition_of(change.subject_id.encode()) != partition
        ):  # the view of this partition can never show it
            loop.unsettled[partition].settle(change.subject_id.encode())
            letter = core.dead_letter(rec, now, "consent", Misrouted(_misrouted(change)))
            loop.emitter.emit(RoutePlan((letter,), None, dead_letter=True), rec, partition)
        elif retracting(change):
            subject = change.subject_id.encode()
            lookup = loop.view.lookup(partition, subject)
            try:
                timeline = core.timeline(lookup.raw) if lookup.state == "present" else None
                shown = view_shows(change, lookup, timeline)
            except DecodeError:
                shown = True  # unreadable: every event of the subject is denied anyway
            if not shown:
                loop.s.note_unsettled(change, rec.where)
                return  # later changes of this partition wait: settle in log order
            outs = retractions(core.policy, change, core.keys)
            loop.emitter.emit_retractions(outs, change, rec.where)
            loop.unsettled[partition].settle(subject)
        queue.popleft()
        loop.offsets[key] = rec.offset + 1


def _misrouted(change: ConsentChange) -> str:
    return (
        f"consent change {change.change_id} of {change.subject_id!r} is not on its subject's "
        "partition (murmur2): no consent view can show it, its retractions cannot be ordered"
    )
