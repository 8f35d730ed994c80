"""Make the cluster match deploy/topics.yaml, idempotently, and check co-partitioning.

``apply`` plans first and refuses the whole run (ConfigError, nothing changed) when a topic
would have to lose partitions, or gain some without ``allow_partition_increase``. Then it
creates missing topics, alters differing configs of declared keys (incremental SET; keys not
declared are left alone) and adds partitions if allowed. ``dry_run`` sends every change with
``validate_only`` so the broker still checks it, and changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka.admin import (  # type: ignore[attr-defined]  # admin re-exports implicitly
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from consentgate.errors import ConfigError
from consentgate.ops.topics_spec import TopicSpec, TopicsSpec, load_spec

__all__ = ["TopicsReport", "apply", "check_copartitioned", "load_spec"]

log = logging.getLogger(__name__)


@dataclass
class TopicsReport:
    """What ``apply`` changed (or would change), what it left alone, and warnings."""

    dry_run: bool
    changes: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        prefix = "would: " if self.dry_run else ""
        out = [prefix + change for change in self.changes]
        out += [f"warning: {w}" for w in self.warnings]
        out.append(f"unchanged: {len(self.unchanged)}")
        return out


@dataclass
class _Plan:
    create: list[TopicSpec] = field(default_factory=list)
    alter: dict[str, dict[str, tuple[str | None, str]]] = field(default_factory=dict)
    grow: dict[str, tuple[int, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _norm(value: str | None) -> str | None:
    if value is None:
        return None
    return ",".join(sorted(part.strip() for part in value.split(",")))


def _existing(admin: AdminClient, timeout: float) -> dict[str, Any]:
    metadata = admin.list_topics(timeout=timeout)
    return {name: t for name, t in metadata.topics.items() if t.error is None}


def _current_configs(
    admin: AdminClient, names: list[str], timeout: float
) -> dict[str, dict[str, str | None]]:
    if not names:
        return {}
    futures = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, name) for name in names], request_timeout=timeout
    )
    return {
        resource.name: {k: entry.value for k, entry in future.result().items()}
        for resource, future in futures.items()
    }


def _plan(
    admin: AdminClient, spec: TopicsSpec, allow_partition_increase: bool, timeout: float
) -> _Plan:
    plan = _Plan()
    existing = _existing(admin, timeout)
    present = [t for t in spec.topics.values() if t.name in existing]
    configs = _current_configs(admin, [t.name for t in present], timeout)
    for topic in spec.topics.values():
        if topic.name not in existing:
            plan.create.append(topic)
            continue
        meta = existing[topic.name]
        have = len(meta.partitions)
        if have > topic.partitions:
            plan.errors.append(
                f"{topic.name}: has {have} partitions, declared {topic.partitions}; "
                "Kafka cannot decrease partitions (recreate the topic, or fix the declaration)"
            )
        elif have < topic.partitions:
            if allow_partition_increase:
                plan.grow[topic.name] = (have, topic.partitions)
            else:
                plan.errors.append(
                    f"{topic.name}: has {have} partitions, declared {topic.partitions}; "
                    "pass --increase-partitions to add them (keys move: co-partitioned "
                    "consent state must be rebuilt)"
                )
        replicas = {len(p.replicas) for p in meta.partitions.values()}
        if replicas and replicas != {topic.replication_factor}:
            plan.warnings.append(
                f"{topic.name}: replication factor {sorted(replicas)}, declared "
                f"{topic.replication_factor} (not changed: needs a partition reassignment)"
            )
        current = configs.get(topic.name, {})
        diff = {
            key: (current.get(key), value)
            for key, value in sorted(topic.config.items())
            if _norm(current.get(key)) != _norm(value)
        }
        if diff:
            plan.alter[topic.name] = diff
        if not diff and topic.name not in plan.grow:
            plan.unchanged.append(topic.name)
    return plan


def _wait(futures: dict[Any, Any], what: str) -> None:
    failures = []
    for key, future in futures.items():
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - KafkaException and friends: report all
            failures.append(f"{getattr(key, 'name', key)}: {exc}")
    if failures:
        raise ConfigError(f"{what} failed: " + "; ".join(failures))


def apply(
    admin: AdminClient,
    spec: TopicsSpec,
    dry_run: bool = False,
    *,
    allow_partition_increase: bool = False,
    timeout: float = 30.0,
) -> TopicsReport:
    """Create/alter topics to match ``spec``; returns what changed (or would)."""
    plan = _plan(admin, spec, allow_partition_increase, timeout)
    if plan.errors:
        raise ConfigError("topics not applied:\n  " + "\n  ".join(plan.errors))
    report = TopicsReport(dry_run=dry_run, unchanged=plan.unchanged, warnings=plan.warnings)
    if plan.create:
        new = [
            NewTopic(t.name, t.partitions, t.replication_factor, config=dict(t.config))
            for t in plan.create
        ]
        _wait(
            admin.create_topics(new, validate_only=dry_run, operation_timeout=timeout),
            "create topics",
        )
        report.changes += [f"created {t.name} ({t.partitions} partitions)" for t in plan.create]
    if plan.alter:
        resources = [
            ConfigResource(
                ResourceType.TOPIC,
                name,
                incremental_configs=[
                    ConfigEntry(key, new, incremental_operation=AlterConfigOpType.SET)
                    for key, (_, new) in diff.items()
                ],
            )
            for name, diff in plan.alter.items()
        ]
        _wait(
            admin.incremental_alter_configs(
                resources, validate_only=dry_run, request_timeout=timeout
            ),
            "alter configs",
        )
        report.changes += [
            f"{name}: {key} {old} -> {new}"
            for name, diff in plan.alter.items()
            for key, (old, new) in diff.items()
        ]
    if plan.grow:
        grow = [NewPartitions(name, new) for name, (_, new) in plan.grow.items()]
        _wait(
            admin.create_partitions(grow, validate_only=dry_run, operation_timeout=timeout),
            "add partitions",
        )
        report.changes += [
            f"{name}: partitions {old} -> {new}" for name, (old, new) in plan.grow.items()
        ]
    if not dry_run:
        expected = {t.name: t.partitions for t in plan.create}
        expected.update({name: new for name, (_, new) in plan.grow.items()})
        _await_metadata(admin, expected, timeout)
        for members in spec.copartition.values():
            check_copartitioned(admin, members, timeout=timeout)
    for line in report.lines():
        log.debug("topics: %s", line)
    return report


def _partition_counts(admin: AdminClient, names: list[str], timeout: float) -> dict[str, int]:
    metadata = admin.list_topics(timeout=timeout)
    counts = {}
    for name in names:
        meta = metadata.topics.get(name)
        if meta is not None and meta.error is None:
            counts[name] = len(meta.partitions)
    return counts


def _await_metadata(admin: AdminClient, expected: dict[str, int], timeout: float) -> None:
    """Wait until metadata shows what was just created/grown (it can lag the admin acks)."""
    deadline = time.monotonic() + timeout
    while expected:
        counts = _partition_counts(admin, list(expected), timeout)
        late = {n: p for n, p in expected.items() if counts.get(n) != p}
        if not late:
            return
        if time.monotonic() > deadline:
            raise ConfigError(f"metadata does not show the change yet: {late}")
        time.sleep(0.1)


def check_copartitioned(admin: AdminClient, topics: Iterable[str], *, timeout: float = 10.0) -> int:
    """The shared partition count of ``topics``; ConfigError naming each topic's count if not."""
    names = list(topics)
    counts = _partition_counts(admin, names, timeout)
    missing = [name for name in names if name not in counts]
    if missing:
        raise ConfigError(f"co-partitioned topics missing: {', '.join(missing)}")
    distinct = set(counts.values())
    if len(distinct) != 1:
        listing = ", ".join(f"{name}={counts[name]}" for name in names)
        raise ConfigError(
            f"topics are not co-partitioned (partition counts differ: {listing}); events and "
            "consent for a subject would land in different partitions"
        )
    return distinct.pop()
