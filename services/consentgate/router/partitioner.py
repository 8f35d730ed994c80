"""Kafka's default partitioner (murmur2, as Java clients, aiokafka and librdkafka's
``murmur2_random`` compute it): which partition a subject's records belong to.

The router checks every event against it: an event on another partition than its subject's
is judged by another partition's consent view, so it is denied as ``misrouted``. Pure; a
bounded memory of recent subjects keeps the per-event cost to one dict lookup.
"""

from __future__ import annotations

__all__ = ["SubjectPartitioner", "murmur2", "partition_for"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` as a signed 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end = length - (length & 3)
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` (``toPositive(murmur2) % n``)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class SubjectPartitioner:
    """``partition_for`` with a bounded memory (subjects repeat; murmur2 in Python is ~5 us)."""

    def __init__(self, partitions: int, memory: int = 200_000) -> None:
        if partitions <= 0:
            raise ValueError("partitions must be positive")
        self.partitions = partitions
        self._memory = memory
        self._known: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        known = self._known
        p = known.get(key)
        if p is None:
            if len(known) >= self._memory:
                known.clear()
            p = known[key] = partition_for(key, self.partitions)
        return p
