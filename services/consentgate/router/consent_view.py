"""The router's read-only view of the compacted consent topic (``consent.state.v1``).

A faust ``Table`` whose changelog is the *external* consent topic: faust's recovery loads the
consent partitions co-partitioned with the router's event partitions before any event is
processed, and with ``recovery_buffer_size=1`` keeps applying live consent records one by one
afterwards (any other size pauses the partitions after recovery: live withdrawals would stay
invisible until the next rebalance; see docs/router-internals.md).

Values are kept as the raw bytes of the record (decoded by our serde, not faust). A null value
(tombstone) means the subject was erased: the view remembers it until the tombstone is
compacted away, so a lookup can tell ``erased`` from ``missing`` (both deny).

The view never writes: every mutation of the table raises :class:`ReadOnlyViewError`
(a write would be produced into ``consent.state.v1``).

Progress (records applied, partitions revoked, recovery done) is reported to
:class:`ViewListener` objects, which is how the time-correct gate learns the applied position.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import faust
from faust.tables.manager import TableManager
from faust.types import TP, EventT

from consentgate.errors import ConsentgateError

__all__ = ["ConsentLookup", "ConsentTable", "ConsentView", "ReadOnlyViewError", "ViewListener"]

log = logging.getLogger(__name__)

TABLE_NAME = "consent"


class ReadOnlyViewError(ConsentgateError):
    """Something tried to write into the consent view (it would write to consent.state)."""


class ViewListener(Protocol):
    """Told about the view's progress; all calls happen on the worker's event loop."""

    def on_applied(self, partition: int, next_offset: int) -> None:
        """Every record of ``partition`` below ``next_offset`` is applied to the view."""

    def on_revoked(self, partitions: set[int]) -> None:
        """These partitions left this worker (their applied position is void)."""

    def on_recovered(self, positions: Mapping[int, int]) -> None:
        """Recovery finished: each active partition is applied below its position."""


@dataclass(frozen=True, slots=True)
class ConsentLookup:
    """What the view holds for a subject: present (raw bytes), erased, or missing."""

    state: Literal["present", "erased", "missing"]
    raw: bytes | None = None


class ConsentTable(faust.Table[bytes, bytes]):
    """A faust Table that refuses writes and reports what it applied."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listeners: list[ViewListener] = []
        self.erased: dict[int, set[bytes]] = {}

    # -- read-only ------------------------------------------------------------------------
    def on_key_set(self, key: Any, value: Any) -> None:
        raise ReadOnlyViewError(f"consent view is read-only (set {key!r})")

    def on_key_del(self, key: Any) -> None:
        raise ReadOnlyViewError(f"consent view is read-only (del {key!r})")

    def on_clear(self) -> None:
        raise ReadOnlyViewError("consent view is read-only (clear)")

    # -- progress -------------------------------------------------------------------------
    def apply_changelog_batch(self, batch: Iterable[EventT[bytes]]) -> None:
        events = list(batch)
        super().apply_changelog_batch(events)
        applied: dict[int, int] = {}
        for event in events:
            message = event.message
            key = message.key
            if isinstance(key, bytes):
                tombstones = self.erased.setdefault(message.partition, set())
                if message.value is None:
                    tombstones.add(key)
                else:
                    tombstones.discard(key)
            applied[message.partition] = max(applied.get(message.partition, -1), message.offset + 1)
        for partition, next_offset in applied.items():
            for listener in self.listeners:
                listener.on_applied(partition, next_offset)

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        gone = {tp.partition for tp in revoked if tp.topic == self.changelog_topic_name}
        if gone:
            log.info("consent partitions revoked: %s", sorted(gone))
            for listener in self.listeners:
                listener.on_revoked(gone)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        topic = self.changelog_topic_name
        # what faust's recovery consumed (= applied, with recovery_buffer_size=1): the last
        # offset read, or the persisted offset (rocksdb), or log start - 1; never None here
        consumed = cast(TableManager, self.app.tables).recovery.active_offsets
        positions = {
            tp.partition: _next_offset(consumed.get(tp)) for tp in active_tps if tp.topic == topic
        }
        for partition in set(self.erased) - set(positions):
            del self.erased[partition]
        log.info("consent view ready: %s positions %s", topic, dict(sorted(positions.items())))
        for listener in self.listeners:
            listener.on_recovered(positions)


def _next_offset(last: int | None) -> int:
    return 0 if last is None or last < 0 else last + 1


class ConsentView:
    """The consent table of a router app plus a typed lookup."""

    def __init__(
        self,
        app: faust.App,
        *,
        topic: str = "consent.state.v1",
        partitions: int,
        store: str | None = None,
        recovery_buffer_size: int = 1,
    ) -> None:
        self.topic_name = topic
        self.recovery_buffer_size = recovery_buffer_size
        if recovery_buffer_size != 1:
            log.warning(
                "consent view with recovery_buffer_size=%d: live consent changes will NOT be "
                "applied until the next rebalance (only 1 is safe)",
                recovery_buffer_size,
            )
        self.topic = app.topic(
            topic,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
            acks=False,  # never commit consumer offsets for the consent topic
            allow_empty=True,  # as faust's own changelogs: a tombstone is an event with None
            maxsize=131_072,
        )
        table = ConsentTable(
            app,
            name=TABLE_NAME,
            beacon=app.tables.beacon,
            default=None,
            key_type=bytes,
            value_type=bytes,
            partitions=partitions,
            changelog_topic=self.topic,
            recovery_buffer_size=recovery_buffer_size,
            store=store,
        )
        app.tables.add(table)
        self.table = table

    def add_listener(self, listener: ViewListener) -> None:
        self.table.listeners.append(listener)

    def lookup(self, subject: str | bytes) -> ConsentLookup:
        """The subject's consent record as the view holds it now (no I/O)."""
        key = subject.encode() if isinstance(subject, str) else subject
        raw = self.table.get(key)
        if raw is not None:
            return ConsentLookup("present", bytes(raw))
        if any(key in keys for keys in self.table.erased.values()):
            return ConsentLookup("erased")
        return ConsentLookup("missing")
