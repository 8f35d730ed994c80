"""What the console reads from: the cluster, the policy, the serde and the topic names, and
a small time-limited cache of reports (a page and its next page reuse one read).

The reports are the operators' own (:mod:`consentgate.ops.report`): the console renders
what ``consentgate report`` prints, it never reads or counts on its own. Every read here
blocks (Kafka); the routes run them in the threadpool.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from consentgate.models.records import DecisionRecord
from consentgate.ops.report import (
    ReportTopics,
    SubjectRecords,
    build_subject_report,
    read_subject,
    recipient_report,
)
from consentgate.ops.report_format import Report
from consentgate.policy import Policy, PseudonymKeys
from consentgate.serde import Serde

__all__ = ["ReportCache", "Sources", "SubjectView"]

T = TypeVar("T")
MAX_CACHED = 32


class ReportCache:
    """Values by key for ``seconds`` (0: no cache), at most :data:`MAX_CACHED` of them.

    Requests for a key being made wait for that one read instead of starting their own (a
    cold report can take seconds: many reloads must not read the same topic many times).
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._items: OrderedDict[tuple[str, ...], tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[tuple[str, ...], threading.Lock] = {}

    def _fresh(self, key: tuple[str, ...], since: float) -> tuple[Any, float] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None and (since - found[0] < self.seconds or found[0] >= since):
                return found[1], found[0]
            return None

    def get(self, key: tuple[str, ...], make: Callable[[], T]) -> tuple[T, float]:
        """The cached value and when it was made (clock), or a new one from ``make()``."""
        asked = self.clock()
        found = self._fresh(key, asked)
        if found is not None:
            return found  # stored by make() for this key: a T
        with self._lock:
            making = self._making.setdefault(key, threading.Lock())
        with making:
            found = self._fresh(key, asked)  # made while this request waited
            if found is not None:
                return found
            now = self.clock()
            value = make()
            with self._lock:
                self._items[key] = (now, value)
                self._items.move_to_end(key)
                while len(self._items) > MAX_CACHED:
                    self._items.popitem(last=False)
                self._making.pop(key, None)
        return value, now

    def drop(self, key: tuple[str, ...]) -> None:
        with self._lock:
            self._items.pop(key, None)


@dataclass(frozen=True, slots=True)
class SubjectView:
    """A subject's report as one read made it, with its decisions newest first."""

    records: SubjectRecords
    report: Report
    latest: list[DecisionRecord]
    as_of: datetime


@dataclass
class Sources:
    kafka: dict[str, Any]
    policy: Policy
    serde: Serde
    topics: ReportTopics
    dead_letters: str
    keys: PseudonymKeys | None
    cache: ReportCache

    def subject(self, subject_id: str, *, decisions: bool = True) -> SubjectRecords:
        """The subject report's records (blocking)."""
        return read_subject(
            self.kafka,
            self.policy,
            self.serde,
            subject_id,
            topics=self.topics,
            keys=self.keys,
            decisions=decisions,
        )

    def cached_subject(self, subject_id: str) -> tuple[SubjectView, float]:
        """The subject's records and report as of the read (cached, blocking)."""

        def make() -> SubjectView:
            records = self.subject(subject_id)
            now = datetime.now(UTC)
            latest = sorted(
                records.decisions or [],
                key=lambda d: (d.decided_at, str(d.event_id)),
                reverse=True,
            )
            report = build_subject_report(records, self.topics, now)
            return SubjectView(records, report, latest, now)

        return self.cache.get(("subject", subject_id), make)

    def cached_recipient(self, recipient_id: str, since: date | None) -> tuple[Report, float]:
        key = ("recipient", recipient_id, since.isoformat() if since else "")
        return self.cache.get(
            key,
            lambda: recipient_report(
                self.kafka, self.policy, self.serde, recipient_id, topics=self.topics, since=since
            ),
        )
