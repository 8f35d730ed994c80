"""Topics as code: the declaration file (deploy/topics.yaml), validated and resolved.

File shape::

    version: 1
    defaults: {partitions: 6, replication_factor: 1}
    copartition:                      # groups that must share a partition count
      subject_keyed: {partitions: 6, topics: [events.browsing.raw.v1, consent.state.v1]}
    topics:
      consent.state.v1: {config: {cleanup.policy: compact}}
    sinks_from_policy:                # optional: one topic per sink `topic` in the policy
      file: policy.yaml               # relative to this file
      required: true                  # default; false = skip when the file is missing
      template: {partitions: 6, config: {retention.ms: 2592000000}}

A co-partition member takes the group's partition count (declaring another is an error).
Config values are kept as the strings Kafka uses (``604800000``, ``compact``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from consentgate.errors import ConfigError

__all__ = ["TopicSpec", "TopicsSpec", "load_spec", "parse_spec", "policy_sink_topics"]

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _check_name(name: str) -> str:
    if not _TOPIC_NAME.match(name) or name in {".", ".."}:
        raise ValueError(f"invalid topic name {name!r}")
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicDecl(_Strict):
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


class TopicSpec(_Strict):
    """One topic as it must exist on the cluster."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


class TopicsSpec(_Strict):
    """Every declared topic, resolved, and the co-partition groups (name -> members)."""

    topics: dict[str, TopicSpec]
    copartition: dict[str, list[str]]


def _config_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def policy_sink_topics(policy: Any) -> list[str]:
    """The ``topic`` of every entry of the policy's ``sinks`` (a list or a mapping)."""
    sinks = policy.get("sinks") if isinstance(policy, Mapping) else None
    if isinstance(sinks, Mapping):
        entries = list(sinks.values())
    elif isinstance(sinks, list):
        entries = sinks
    else:
        raise ConfigError("policy file has no `sinks` list or mapping")
    topics = []
    for entry in entries:
        topic = entry.get("topic") if isinstance(entry, Mapping) else None
        if not isinstance(topic, str):
            raise ConfigError(f"policy sink without a string `topic`: {entry!r}")
        topics.append(topic)
    return topics


def parse_spec(data: Any, *, base_dir: Path | None = None) -> TopicsSpec:
    """Validate and resolve a parsed topics file."""
    try:
        file = TopicsFile.model_validate(data)
    except PydanticValidationError as exc:
        raise ConfigError(f"invalid topics file: {exc}") from exc
    decls = dict(file.topics)
    if file.sinks_from_policy is not None:
        source = file.sinks_from_policy
        policy_path = (base_dir or Path.cwd()) / source.file
        if source.required or policy_path.exists():
            for topic in policy_sink_topics(_read_yaml(policy_path)):
                decls.setdefault(topic, source.template)
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
        )
    groups = {group: list(members.topics) for group, members in file.copartition.items()}
    return TopicsSpec(topics=topics, copartition=groups)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc


def load_spec(path: Path | str) -> TopicsSpec:
    """Read, validate and resolve a topics file (policy paths are relative to it)."""
    path = Path(path)
    return parse_spec(_read_yaml(path), base_dir=path.parent)
