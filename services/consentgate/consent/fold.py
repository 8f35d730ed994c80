"""The consent fold's pure core: consent-state partition N as the fold of consent-changes
partition N.

A :class:`PartitionFold` holds the timelines of one partition: those it has folded, over
the state records loaded when the partition was assigned (``base``: subject key -> record
bytes, or :data:`ERASED_BASE` for a tombstone). ``fold`` takes a batch of raw change
records, in log order, and returns what to write: per subject touched, the new state record
(or a tombstone), and a :class:`Rejection` for every record that cannot be a change. Rules:

- a record that does not decode, is not keyed by its subject, sits on another partition
  than its subject's, is a GRANT effective before it was recorded, or reuses a change id
  for another change, is rejected (dead-lettered by the shell) and changes nothing;
- ``apply`` is idempotent by change id and independent of arrival order (effective time
  decides), so folding a record twice, after a crash or by two replicas, is harmless;
- every timeline written is trimmed at the history horizon (``trim`` keeps every interval
  an event at or after the horizon can need);
- an erased subject's record is an erasure marker (the ERASE and the ids it wiped), so a
  retried change with a wiped id stays a no-op after a restart; once the horizon passes
  the erasure the marker becomes a tombstone (``sweep``): retries are honoured for
  ``history_horizon_days``.

No I/O: the faust shell (:mod:`consentgate.consent.fold_app`) reads and writes Kafka.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from consentgate.consent.accept import rejection
from consentgate.consent.timeline import Timeline, apply, horizon_start, trim
from consentgate.errors import ConsentgateError, DecodeError, ValidationError
from consentgate.models.consent import ConsentChange, ConsentTimeline
from consentgate.serde import Serde

__all__ = ["ERASED_BASE", "FoldError", "FoldResult", "PartitionFold", "RawChange", "Rejection"]

ERASED_BASE = b""
"""Marks a tombstone in a partition's base (no record bytes are empty: Avro has a header)."""


class FoldError(ConsentgateError):
    """A stored state record cannot be read: the fold cannot continue on this partition."""


@dataclass(frozen=True, slots=True)
class RawChange:
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    record: RawChange
    error_type: str
    reason: str


@dataclass(slots=True)
class FoldResult:
    writes: dict[bytes, bytes | None] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0


class PartitionFold:
    """The timelines of one consent partition, and the rule that folds changes into them."""

    def __init__(
        self,
        *,
        topic: str,
        partition: int,
        partitions: int,
        serde: Serde,
        horizon_days: int,
        base: Callable[[bytes], bytes | None],
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.partitions = partitions
        self.serde = serde
        self.horizon_days = horizon_days
        self._base = base
        self._timelines: dict[bytes, Timeline | None] = {}

    def timeline(self, key: bytes) -> Timeline | None:
        """The subject's current timeline (None: no record, or a tombstone)."""
        if key in self._timelines:
            return self._timelines[key]
        raw = self._base(key)
        timeline = None
        if raw is not None and raw != ERASED_BASE:
            try:
                record = self.serde.decode_model(raw, ConsentTimeline)
            except (DecodeError, ValidationError) as exc:
                raise FoldError(
                    f"state record of a subject on {self.topic}[{self.partition}] is "
                    f"unreadable ({exc}); rebuild consent-state from consent-changes"
                ) from exc
            timeline = Timeline(record)
        self._timelines[key] = timeline
        return timeline

    def fold(self, records: Sequence[RawChange], now: datetime) -> FoldResult:
        result = FoldResult()
        before = horizon_start(now, self.horizon_days)
        for record in records:
            change = self._change(record, result)
            if change is None:
                continue
            key = record.key or b""
            current = self.timeline(key)
            try:
                updated = apply(current, change)
            except ValidationError as exc:
                result.rejected.append(Rejection(record, "ValidationError", str(exc)))
                continue
            if updated is current:
                result.duplicates += 1
                continue
            result.applied += 1
            self._store(key, trim(updated, before), before, result)
        self._encode(result)
        return result

    def sweep(self, now: datetime, keys: Iterable[bytes]) -> FoldResult:
        """Tombstones for the erasure markers among ``keys`` that the horizon has passed."""
        result = FoldResult()
        before = horizon_start(now, self.horizon_days)
        for key in keys:
            timeline = self.timeline(key)
            if timeline is not None and timeline.erased:
                self._store(key, timeline, before, result)
        self._encode(result)
        return result

    def _store(self, key: bytes, timeline: Timeline, before: datetime, result: FoldResult) -> None:
        """Keep the subject's new timeline (None: a tombstone); encoded once per batch."""
        erased_at = timeline.erased_at
        gone = timeline.erased and erased_at is not None and erased_at < before
        self._timelines[key] = None if gone else timeline
        result.writes[key] = None  # placeholder, in first-touch order: see _encode

    def _encode(self, result: FoldResult) -> None:
        """The state record of every subject the batch touched, from its final timeline."""
        for key in result.writes:
            timeline = self._timelines[key]
            result.writes[key] = None if timeline is None else self.serde.encode(timeline.record)

    def _change(self, record: RawChange, result: FoldResult) -> ConsentChange | None:
        def reject(error_type: str, reason: str) -> None:
            result.rejected.append(Rejection(record, error_type, reason))

        if record.value is None:
            reject("NullValue", "a null value on the consent-changes log is not a change")
            return None
        try:
            change = self.serde.decode_model(
                record.value,
                ConsentChange,
                topic=self.topic,
                partition=self.partition,
                offset=record.offset,
            )
        except (DecodeError, ValidationError) as exc:
            reject(type(exc).__name__, str(exc))
            return None
        rejected = rejection(record.key, change, self.partition, self.partitions)
        if rejected is not None:
            reject(rejected.error_type, rejected.reason)
            return None
        return change
