"""The topics a replay writes: versioned names, and creating them like their live topics.

By default a replay writes next to the live topics, never into them: each sink topic ``T``
becomes ``T.<suffix>``, and so do the decisions, provisions and dead-letter topics. A
missing versioned topic is created with its live topic's partition count and replication
factor and the configs set on the live topic (retention, compaction); for a sink the live
cluster does not have yet (a sink the new policy adds), with the source topic's partition
count (sinks are keyed by subject, like the source). The provisions topic is co-partitioned
with the source, so its versioned copy is too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import (  # type: ignore[attr-defined]  # admin re-exports implicitly
    AdminClient,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

from consentgate.errors import ConfigError

__all__ = [
    "SUFFIX_PATTERN",
    "TopicShape",
    "create_like",
    "partitions_of",
    "shape_of",
    "versioned",
]

SUFFIX_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_MAX_TOPIC = 249


@dataclass(frozen=True, slots=True)
class TopicShape:
    partitions: int
    replication_factor: int
    config: Mapping[str, str]


def versioned(topic: str, suffix: str) -> str:
    """``topic.suffix``; ConfigError if the suffix or the name is not a legal topic name."""
    if not SUFFIX_PATTERN.match(suffix):
        raise ConfigError(
            f"--into {suffix!r}: letters, digits, '.', '_' and '-' only (at most 100)"
        )
    name = f"{topic}.{suffix}"
    if len(name) > _MAX_TOPIC:
        raise ConfigError(f"versioned topic {name!r} is longer than {_MAX_TOPIC} characters")
    return name


def partitions_of(kafka: Mapping[str, Any], topic: str, timeout: float = 30.0) -> int | None:
    """The partition count of ``topic`` (None: no such topic)."""
    meta = AdminClient(dict(kafka)).list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        return None
    return len(meta.partitions)


def shape_of(admin: AdminClient, topic: str, timeout: float = 30.0) -> TopicShape | None:
    """The live topic's partitions, replication and dynamically set configs (None: absent)."""
    meta = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        return None
    replicas = max(len(p.replicas) for p in meta.partitions.values())
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource], request_timeout=timeout)[resource].result()
    config = {
        name: entry.value
        for name, entry in entries.items()
        if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value and entry.value is not None
    }
    return TopicShape(len(meta.partitions), replicas, config)


def create_like(
    admin: AdminClient,
    wanted: Mapping[str, str],
    fallback: TopicShape,
    *,
    timeout: float = 30.0,
) -> list[str]:
    """Create each missing ``versioned`` topic of ``wanted`` (live -> versioned) shaped like
    its live topic (or ``fallback``); the names created, once metadata shows them."""
    existing = set(admin.list_topics(timeout=timeout).topics)
    todo = {live: name for live, name in wanted.items() if name not in existing}
    if not todo:
        return []
    new = []
    for live, name in sorted(todo.items()):
        shape = shape_of(admin, live, timeout) or fallback
        new.append(
            NewTopic(
                name,
                num_partitions=shape.partitions,
                replication_factor=shape.replication_factor,
                config=dict(shape.config),
            )
        )
    failures = []
    for name, future in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - collected and raised as one error
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                failures.append(f"{name}: {exc}")
    if failures:
        raise ConfigError("cannot create versioned topics: " + "; ".join(failures))
    _await(admin, todo.values(), timeout)
    return sorted(todo.values())


def _await(admin: AdminClient, names: Iterable[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    wanted = set(names)
    while True:
        topics: dict[str, Any] = admin.list_topics(timeout=timeout).topics
        if all(_led(topics.get(n)) for n in wanted):
            return
        if time.monotonic() > deadline:
            raise ConfigError(f"created topics not in metadata yet: {sorted(wanted)}")
        time.sleep(0.1)


def _led(meta: Any) -> bool:
    """Created and every partition has a leader."""
    if meta is None or meta.error is not None or not meta.partitions:
        return False
    return all(p.leader >= 0 and p.error is None for p in meta.partitions.values())
