"""Consent changes read from ``consent.changes`` that the consent view does not show yet.

A retraction must never precede data it is meant to retract. The router writes the
retractions of a withdrawal or erasure only once the view of the subject's partition shows
that change: every event decided on the older view was produced before (same producer, same
sink key, so the same sink partition, in order), and every event decided afterwards is
judged on the new consent. Until then the change is *unsettled*: the subject's events are
denied (``consent_state_stale``) instead of being judged on a view that misses a withdrawal
we already know of. Changes of a partition settle in log order (the committed offset of the
changes partition never passes an unsettled change), so a crash re-reads exactly the
changes whose retractions were not committed. Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter

from consentgate.consent.timeline import Timeline
from consentgate.models.consent import ConsentAction, ConsentChange
from consentgate.router.view import ConsentLookup

__all__ = ["Unsettled", "retracting", "view_shows"]


def retracting(change: ConsentChange) -> bool:
    """Changes that take consent away (and may need retractions)."""
    return change.action in {ConsentAction.WITHDRAW, ConsentAction.ERASE}


def view_shows(change: ConsentChange, lookup: ConsentLookup, timeline: Timeline | None) -> bool:
    """Does the view's record of the subject reflect ``change``?

    Erased (tombstone) shows every change. A record shows a change it retains, one it
    dropped because an erasure covers it (``erased_change_ids``), or one older than what
    the record was trimmed to. (An unreadable record denies all of the subject's events
    as ``consent_unreadable``; the loop treats it as showing the change.)
    """
    if lookup.state == "erased":
        return True
    if timeline is None:
        return False
    record = timeline.record
    if change.change_id in record.erased_change_ids:
        return True
    if any(c.change_id == change.change_id for c in record.changes):
        return True
    trimmed = record.trimmed_before
    return trimmed is not None and change.effective_time < trimmed


class Unsettled:
    """Subjects with a withdrawal or erasure read from the log but not shown by the view."""

    def __init__(self) -> None:
        self._subjects: Counter[bytes] = Counter()

    def __bool__(self) -> bool:
        return bool(self._subjects)

    def __len__(self) -> int:
        return sum(self._subjects.values())

    def __contains__(self, subject: object) -> bool:
        return subject in self._subjects

    def add(self, subject: bytes) -> None:
        self._subjects[subject] += 1

    def settle(self, subject: bytes) -> None:
        n = self._subjects[subject] - 1
        if n > 0:
            self._subjects[subject] = n
        else:
            self._subjects.pop(subject, None)

    def clear(self) -> None:
        self._subjects.clear()
