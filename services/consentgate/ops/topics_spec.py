"""Topics as code: the declaration file (deploy/topics.yaml), validated and resolved.

File shape::

    version: 1
    defaults: {partitions: 6, replication_factor: 1}
    copartition:                      # groups that must share a partition count
      subject_keyed: {partitions: 6, topics: [events.browsing.raw.v1, consent.state.v1]}
    topics:
      consent.state.v1: {role: consent_state, config: {cleanup.policy: compact}}
    sinks_from_policy:                # optional: one topic per sink `topic` in the policy
      file: policy.yaml               # relative to this file
      required: true                  # default; false = skip when the file is missing
      template: {partitions: 6, config: {retention.ms: 2592000000}}

A co-partition member takes the group's partition count (declaring another is an error).
Config values are kept as the strings Kafka uses (``604800000``, ``compact``).

``role`` says what a topic is for (``source``, ``sink``, ``consent_log``, ``consent_state``,
``decisions``, ``provisions``, ``dead_letters``); every topic from ``sinks_from_policy``, and
every policy sink declared in ``topics``, is a ``sink``. Roles make retention checkable: the
independent audit judges a sink record by its raw event, its decision and the consent log,
so a topic holding such evidence must keep records at least as long as any topic whose
records it is evidence for (``EVIDENCE_FOR``). A spec that breaks this is refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from consentgate.errors import ConfigError

__all__ = [
    "EVIDENCE_FOR",
    "Lifetime",
    "Role",
    "TopicSpec",
    "TopicsSpec",
    "check_retention",
    "lifetime",
    "load_spec",
    "parse_spec",
    "policy_sink_topics",
    "policy_sinks",
    "read_yaml",
]

Role = Literal[
    "source", "sink", "consent_log", "consent_state", "decisions", "provisions", "dead_letters"
]

# topics of the key role hold the evidence the audit needs to judge records of the value roles:
# a sink record or dead letter is judged by its raw event and its decision, a raw event by the
# consent log at its time; every raw record needs its decision, every delivery its provision.
EVIDENCE_FOR: dict[Role, tuple[Role, ...]] = {
    "source": ("sink", "dead_letters"),
    "decisions": ("sink", "dead_letters", "source"),
    "consent_log": ("source",),
    "provisions": ("sink",),
}
# Kafka's defaults where a topic does not say (a cluster may override the first two)
DEFAULT_RETENTION_MS = 604_800_000  # log.retention.hours = 168
DEFAULT_SEGMENT_MS = 604_800_000  # log.roll.hours = 168
RETENTION_CHECK_MS = 300_000  # log.retention.check.interval.ms
_DAY_MS = 86_400_000

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _check_name(name: str) -> str:
    if not _TOPIC_NAME.match(name) or name in {".", ".."}:
        raise ValueError(f"invalid topic name {name!r}")
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicDecl(_Strict):
    role: Role | None = None
    partitions: int | None = Field(default=None, ge=1)
    replication_factor: int | None = Field(default=None, ge=1)
    config: dict[str, str] = Field(default_factory=dict)
    description: str = ""

    @field_validator("config", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): _config_str(v) for k, v in value.items()}
        return value


class Defaults(_Strict):
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)


class CopartitionGroup(_Strict):
    partitions: int = Field(ge=1)
    topics: list[str] = Field(min_length=2)


class SinksFromPolicy(_Strict):
    file: str
    required: bool = True  # false: a missing policy file adds no topics
    template: TopicDecl = Field(default_factory=TopicDecl)


class TopicsFile(_Strict):
    version: Literal[1]
    defaults: Defaults = Field(default_factory=Defaults)
    copartition: dict[str, CopartitionGroup] = Field(default_factory=dict)
    topics: dict[str, TopicDecl] = Field(default_factory=dict)
    sinks_from_policy: SinksFromPolicy | None = None
    access: Any = None  # who may do what: resolved by ops.access_spec, not here


class TopicSpec(_Strict):
    """One topic as it must exist on the cluster."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]
    role: Role | None = None


class TopicsSpec(_Strict):
    """Every declared topic, resolved, and the co-partition groups (name -> members)."""

    topics: dict[str, TopicSpec]
    copartition: dict[str, list[str]]

    def with_role(self, role: Role) -> list[str]:
        """The names of the topics of ``role``, in declaration order."""
        return [name for name, topic in self.topics.items() if topic.role == role]


def _config_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def policy_sinks(policy: Any) -> list[tuple[str, str | None]]:
    """(``topic``, ``recipient`` or None) of every entry of the policy's ``sinks`` (a list or
    a mapping)."""
    sinks = policy.get("sinks") if isinstance(policy, Mapping) else None
    if isinstance(sinks, Mapping):
        entries = list(sinks.values())
    elif isinstance(sinks, list):
        entries = sinks
    else:
        raise ConfigError("policy file has no `sinks` list or mapping")
    out: list[tuple[str, str | None]] = []
    for entry in entries:
        topic = entry.get("topic") if isinstance(entry, Mapping) else None
        if not isinstance(topic, str):
            raise ConfigError(f"policy sink without a string `topic`: {entry!r}")
        recipient = entry.get("recipient")
        out.append((topic, recipient if isinstance(recipient, str) else None))
    return out


def policy_sink_topics(policy: Any) -> list[str]:
    """The ``topic`` of every entry of the policy's ``sinks`` (a list or a mapping)."""
    return [topic for topic, _ in policy_sinks(policy)]


def _with_policy_sinks(file: TopicsFile, base_dir: Path) -> dict[str, TopicDecl]:
    """The declared topics plus a template topic per undeclared policy sink, all role sink."""
    decls = dict(file.topics)
    source = file.sinks_from_policy
    if source is None:
        return decls
    if source.template.role not in (None, "sink"):
        raise ConfigError(f"sinks_from_policy.template has role {source.template.role!r}")
    policy_path = base_dir / source.file
    if source.required or policy_path.exists():
        for topic in policy_sink_topics(read_yaml(policy_path)):
            decl = decls.setdefault(topic, source.template)
            if decl.role not in (None, "sink"):
                raise ConfigError(f"{topic!r} is a policy sink but declared role {decl.role!r}")
            decls[topic] = decl.model_copy(update={"role": "sink"})
    return decls


def parse_spec(data: Any, *, base_dir: Path | None = None) -> TopicsSpec:
    """Validate and resolve a parsed topics file."""
    try:
        file = TopicsFile.model_validate(data)
    except PydanticValidationError as exc:
        raise ConfigError(f"invalid topics file: {exc}") from exc
    decls = _with_policy_sinks(file, base_dir or Path.cwd())
    group_of: dict[str, tuple[str, int]] = {}
    for group, members in file.copartition.items():
        for topic in members.topics:
            if topic not in decls:
                raise ConfigError(f"co-partition group {group!r} names undeclared topic {topic!r}")
            if topic in group_of and group_of[topic][1] != members.partitions:
                raise ConfigError(f"{topic!r} is in two co-partition groups with other counts")
            group_of[topic] = (group, members.partitions)
    topics: dict[str, TopicSpec] = {}
    for name, decl in decls.items():
        try:
            _check_name(name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        partitions = decl.partitions or file.defaults.partitions
        if name in group_of:
            group, count = group_of[name]
            if decl.partitions is not None and decl.partitions != count:
                raise ConfigError(
                    f"{name!r} declares {decl.partitions} partitions but its co-partition "
                    f"group {group!r} has {count}"
                )
            partitions = count
        topics[name] = TopicSpec(
            name=name,
            partitions=partitions,
            replication_factor=decl.replication_factor or file.defaults.replication_factor,
            config=dict(decl.config),
            role=decl.role,
        )
    check_retention(topics.values())
    groups = {group: list(members.topics) for group, members in file.copartition.items()}
    return TopicsSpec(topics=topics, copartition=groups)


def _ms(config: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(config.get(key, default))
    except ValueError as exc:
        raise ConfigError(f"{key} is not a whole number of ms: {config[key]!r}") from exc


def _days(ms: float) -> str:
    if ms == math.inf:
        return "forever"
    return f"{ms / _DAY_MS:.2f}".rstrip("0").rstrip(".") + " d"


def _up_to(ms: float) -> str:
    return "forever" if ms == math.inf else f"up to {_days(ms)}"


@dataclass(frozen=True)
class Lifetime:
    """How long a record stays in a topic, at least and at most (ms; inf = forever), and why."""

    shortest: float
    longest: float
    why_shortest: str
    why_longest: str


def lifetime(topic: TopicSpec) -> Lifetime:
    """A record's lifetime in ``topic`` from its config (Kafka's defaults where it says none).

    Time-based deletion removes a whole segment once its newest record is ``retention.ms``
    old: a record stays at least ``retention.ms``, at most that plus ``segment.ms`` (a
    segment's span) plus one retention check. ``retention.bytes`` can delete a record at any
    time; compaction any time after ``min.compaction.lag.ms``. ``retention.ms -1`` = forever.
    """
    config = topic.config
    policies = {p.strip() for p in config.get("cleanup.policy", "delete").split(",")}
    retention = _ms(config, "retention.ms", DEFAULT_RETENTION_MS)
    segment = _ms(config, "segment.ms", DEFAULT_SEGMENT_MS)
    if "delete" not in policies or retention == -1:
        shortest: float = math.inf
        longest: float = math.inf
        why = "no time-based deletion" if "delete" not in policies else "retention.ms -1"
        why_shortest = why_longest = why
    else:
        shortest, longest = retention, retention + segment + RETENTION_CHECK_MS
        why_shortest = f"retention.ms {retention}"
        why_longest = f"retention.ms {retention} + segment.ms {segment}"
    if "delete" in policies and _ms(config, "retention.bytes", -1) >= 0:
        shortest, why_shortest = 0, "retention.bytes can delete it at any time"
    if "compact" in policies:
        lag = _ms(config, "min.compaction.lag.ms", 0)
        if lag < shortest:
            shortest, why_shortest = lag, f"compaction after min.compaction.lag.ms {lag}"
    return Lifetime(shortest, longest, why_shortest, why_longest)


def check_retention(topics: Iterable[TopicSpec]) -> None:
    """ConfigError unless every evidence topic keeps records as long as what it is evidence for.

    For each pair in ``EVIDENCE_FOR`` the evidence topic's shortest lifetime must reach the
    other topic's longest, so no record can outlive what the audit needs to judge it. Topics
    without a role are not checked.
    """
    by_role: dict[str, list[TopicSpec]] = {}
    for topic in topics:
        if topic.role is not None:
            by_role.setdefault(topic.role, []).append(topic)
    problems = []
    for role, judged in EVIDENCE_FOR.items():
        for keeper in by_role.get(role, []):
            keeps = lifetime(keeper)
            outlive = [
                f"{t.name} ({t.role}: {_up_to(life.longest)}, {life.why_longest})"
                for other in judged
                for t in by_role.get(other, [])
                if (life := lifetime(t)).longest > keeps.shortest
            ]
            if outlive:
                more = f"; and {len(outlive) - 5} more" if len(outlive) > 5 else ""
                problems.append(
                    f"{keeper.name} ({role}) can delete a record after {_days(keeps.shortest)} "
                    f"({keeps.why_shortest}), but records it is evidence for stay longer in "
                    f"{'; '.join(outlive[:5])}{more}"
                )
    if problems:
        raise ConfigError(
            "retention: records could outlive the evidence the audit judges them by (raise "
            "the evidence topic's retention.ms or lower the others'):\n  " + "\n  ".join(problems)
        )


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc


def load_spec(path: Path | str) -> TopicsSpec:
    """Read, validate and resolve a topics file (policy paths are relative to it)."""
    path = Path(path)
    return parse_spec(read_yaml(path), base_dir=path.parent)
