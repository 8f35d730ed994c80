"""Consent as it was known at an instant: each subject's timeline from ``consent.changes``,
using only the changes recorded by then (``--consent event-time``). Pure: no I/O.

``known_at(subject, t)`` folds (``consent.timeline.apply``) every change of the subject
whose ``recorded_time`` is at or before ``t``; ``apply`` is order-independent and
idempotent, so the prefix of the changes ordered by ``recorded_time`` is the consent
service's knowledge at ``t``. The timelines of each prefix are built once, on first use.

A change is admitted as the consent fold admits it (:func:`admit`): keyed by its subject, on
its subject's partition, and no GRANT effective before it was recorded. What the fold would
dead-letter never becomes consent here either.

Erasure wins over history: ``event_time_consent`` denies an event as ``erased`` when the
subject's whole log (what is known now) erases it, even if the erasure was recorded after
the event. A replay must never re-create data of an erased subject, whatever it
reconstructs.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime

from consentgate.consent.timeline import Timeline, apply
from consentgate.errors import ValidationError
from consentgate.models.consent import ConsentAction, ConsentChange
from consentgate.policy import ReasonCode
from consentgate.router.partitioner import partition_for

__all__ = ["Consent", "ConsentHistory", "admit", "event_time_consent"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Consent:
    """What an event is judged on: a timeline (None: no record), or an override that denies
    every sink (erased, consent_unreadable)."""

    timeline: Timeline | None
    override: ReasonCode | None = None


NO_RECORD = Consent(None)
ERASED = Consent(None, ReasonCode.ERASED)


def admit(change: ConsentChange, key: bytes | None, partition: int, partitions: int) -> str | None:
    """Why the consent fold would refuse this change record (None: it folds it)."""
    if key != change.subject_id.encode():
        return "the record key is not the change's subject id"
    if partition_for(key, partitions) != partition:
        return "not on its subject's partition"
    if change.action is ConsentAction.GRANT and change.effective_time < change.recorded_time:
        return "a grant effective before it was recorded"
    return None


class ConsentHistory:
    """Every admitted change, per subject; the timeline known at any instant."""

    def __init__(self) -> None:
        self._changes: dict[str, list[ConsentChange]] = {}
        self._built: dict[str, tuple[list[datetime], list[Timeline]]] = {}
        self.changes = 0

    def add(self, change: ConsentChange) -> None:
        self._changes.setdefault(change.subject_id, []).append(change)
        self._built.pop(change.subject_id, None)
        self.changes += 1

    @property
    def subjects(self) -> int:
        return len(self._changes)

    def known_at(self, subject: str, t: datetime) -> Timeline | None:
        """The subject's timeline from the changes recorded at or before ``t``."""
        times, timelines = self._prefixes(subject)
        i = bisect_right(times, t)
        return timelines[i - 1] if i else None

    def latest(self, subject: str) -> Timeline | None:
        """The timeline from every change of the subject (what is known now)."""
        _, timelines = self._prefixes(subject)
        return timelines[-1] if timelines else None

    def _prefixes(self, subject: str) -> tuple[list[datetime], list[Timeline]]:
        built = self._built.get(subject)
        if built is not None:
            return built
        changes = sorted(
            self._changes.get(subject, ()), key=lambda c: (c.recorded_time, c.change_id)
        )
        times: list[datetime] = []
        timelines: list[Timeline] = []
        current: Timeline | None = None
        for change in changes:
            try:
                current = apply(current, change)
            except ValidationError as exc:  # a reused change id: the fold refuses it too
                log.warning("consent change %s of a subject ignored: %s", change.change_id, exc)
                continue
            if times and times[-1] == change.recorded_time:
                timelines[-1] = current  # same instant: only the last state is visible
            else:
                times.append(change.recorded_time)
                timelines.append(current)
        self._built[subject] = (times, timelines)
        return times, timelines


def event_time_consent(history: ConsentHistory, subject: str, t: datetime) -> Consent:
    """The consent an event of ``subject`` at ``t`` is judged on in event-time mode."""
    latest = history.latest(subject)
    erased_at = latest.erased_at if latest is not None else None
    if latest is not None and erased_at is not None and (latest.erased or t < erased_at):
        return ERASED
    timeline = history.known_at(subject, t)
    return NO_RECORD if timeline is None else Consent(timeline)
