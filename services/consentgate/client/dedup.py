"""A bounded memory of the events a consumer has handed on, to drop re-deliveries.

Committed records appear once in a sink read with read_committed; an event still reaches a
consumer twice when it is written twice (a replay into the same topic, a non-transactional
copy) or when a consumer restarts after its callbacks ran but before the commit. Within one
process this memory drops the second copy. It is keyed by (topic, event id): the same event
in two sinks is two deliveries. It is bounded: at most ``capacity`` event ids, the oldest
forgotten first (about 300 bytes each in CPython, ~30 MB at the default 100,000), so a
re-delivery older than that window passes through; stores should still upsert by event id
(``evidence.event_id``), which this memory does not replace, and it does not survive a
restart.

A retraction forgets every event remembered under its (topic, key): the store deleted them,
so if one is delivered again afterwards it is new data to the store, not a duplicate.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["EventMemory"]

_Event = tuple[str, str]  # (topic, event id)
_Key = tuple[str, str | None]  # (topic, record key)


class EventMemory:
    """(topic, event id) -> record key, oldest first, at most ``capacity`` entries."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self._events: OrderedDict[_Event, str | None] = OrderedDict()
        self._by_key: dict[_Key, set[str]] = {}

    def __len__(self) -> int:
        return len(self._events)

    def seen(self, topic: str, event_id: str) -> bool:
        return (topic, event_id) in self._events

    def remember(self, topic: str, event_id: str, key: str | None) -> None:
        if self.capacity == 0 or (topic, event_id) in self._events:
            return
        while len(self._events) >= self.capacity:
            (old_topic, old_id), old_key = self._events.popitem(last=False)
            ids = self._by_key.get((old_topic, old_key))
            if ids is not None:
                ids.discard(old_id)
                if not ids:
                    del self._by_key[(old_topic, old_key)]
        self._events[(topic, event_id)] = key
        self._by_key.setdefault((topic, key), set()).add(event_id)

    def forget_key(self, topic: str, key: str | None) -> int:
        """Forget every event remembered under ``key`` in ``topic``; how many."""
        ids = self._by_key.pop((topic, key), set())
        for event_id in ids:
            self._events.pop((topic, event_id), None)
        return len(ids)
