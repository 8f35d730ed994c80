"""Who may do what on the cluster, as code: the ``access`` section of deploy/topics.yaml.

File shape (beside ``topics``; a topic is named literally or by its role, ``role:sink``)::

    access:
      principals:
        router:
          principal: User:consentgate-router
          read: [role:source, role:consent_state, role:consent_log, role:provisions]
          write: [role:sink, role:decisions, role:provisions, role:dead_letters]
          groups: [consentgate-router]            # group ids starting with these
          transactional_ids: [consentgate-router] # transactional.ids starting with these
        analytics:
          principal: User:analytics
          read: [events.browsing.analytics.v1]
          groups: [analytics]
      partners:                                   # one principal per policy recipient
        principal: User:partner-{recipient}
        groups: [partner-{recipient}.]

Each partner principal reads exactly the sinks whose ``recipient`` in the policy is its
recipient, and nothing else. What it resolves to is a set of ALLOW bindings (Kafka's READ
and WRITE imply DESCRIBE): READ on each read topic, WRITE on each write topic, READ on each
group prefix, WRITE on each transactional.id prefix. A name that matches no declared topic,
a principal declared twice, or a partner template without ``{recipient}`` is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from consentgate.errors import ConfigError
from consentgate.ops.topics_spec import TopicsSpec, parse_spec, policy_sinks, read_yaml

__all__ = ["AccessSpec", "Binding", "Grant", "load_access", "parse_access"]

ResourceType = Literal["TOPIC", "GROUP", "TRANSACTIONAL_ID"]
Pattern = Literal["LITERAL", "PREFIXED"]
Operation = Literal["READ", "WRITE"]
_RECIPIENT = "{recipient}"


@dataclass(frozen=True, order=True)
class Binding:
    """One ALLOW ACL: ``principal`` may ``operation`` on a resource, from any host."""

    principal: str
    resource_type: ResourceType
    name: str
    pattern: Pattern
    operation: Operation

    def __str__(self) -> str:
        star = "*" if self.pattern == "PREFIXED" else ""
        kind = self.resource_type.lower().replace("_", " ")
        return f"{self.principal} {self.operation} {kind} {self.name}{star}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Grant(_Strict):
    """What one principal may do."""

    principal: str
    description: str = ""
    read: list[str] = Field(default_factory=list)
    write: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    transactional_ids: list[str] = Field(default_factory=list)

    @field_validator("principal")
    @classmethod
    def _user(cls, value: str) -> str:
        if not re.fullmatch(r"User:[A-Za-z0-9._{}@-]+", value):
            raise ValueError(f"principal {value!r} is not User:<name>")
        return value


class _AccessFile(_Strict):
    principals: dict[str, Grant] = Field(default_factory=dict)
    partners: Grant | None = None


@dataclass(frozen=True)
class AccessSpec:
    """Every binding the declaration asks for, and how to tell the principals it governs."""

    bindings: frozenset[Binding]
    principals: frozenset[str]  # the declared principals, partners resolved
    partner_pattern: re.Pattern[str] | None  # any partner principal, present or removed

    def governs(self, principal: str) -> bool:
        """True for a principal whose ACLs this declaration owns (a removed partner too)."""
        if principal in self.principals:
            return True
        return bool(self.partner_pattern and self.partner_pattern.fullmatch(principal))

    def of(self, principal: str) -> list[Binding]:
        return sorted(b for b in self.bindings if b.principal == principal)


def _topics(names: Iterable[str], spec: TopicsSpec, who: str) -> list[str]:
    out: list[str] = []
    for name in names:
        if name.startswith("role:"):
            role = name.removeprefix("role:")
            found = [t for t, topic in spec.topics.items() if topic.role == role]
            if not found:
                raise ConfigError(f"access of {who}: {name!r} matches no declared topic")
            out += found
        elif name in spec.topics:
            out.append(name)
        else:
            raise ConfigError(f"access of {who}: topic {name!r} is not declared in topics")
    return out


def _bindings(grant: Grant, topics: Mapping[str, list[str]]) -> set[Binding]:
    p = grant.principal
    out = {Binding(p, "TOPIC", t, "LITERAL", "READ") for t in topics["read"]}
    out |= {Binding(p, "TOPIC", t, "LITERAL", "WRITE") for t in topics["write"]}
    out |= {Binding(p, "GROUP", g, "PREFIXED", "READ") for g in grant.groups}
    out |= {Binding(p, "TRANSACTIONAL_ID", t, "PREFIXED", "WRITE") for t in grant.transactional_ids}
    return out


def _partner(grant: Grant, recipient: str) -> Grant:
    def fill(value: str) -> str:
        return value.replace(_RECIPIENT, recipient)

    return grant.model_copy(
        update={
            "principal": fill(grant.principal),
            "groups": [fill(g) for g in grant.groups],
            "transactional_ids": [fill(t) for t in grant.transactional_ids],
        }
    )


def parse_access(data: Any, spec: TopicsSpec, recipients: Mapping[str, str]) -> AccessSpec:
    """Resolve the ``access`` section against the topics and ``recipients`` (topic ->
    recipient of the policy's partner sinks)."""
    try:
        file = _AccessFile.model_validate(data or {})
    except PydanticValidationError as exc:
        raise ConfigError(f"invalid access section: {exc}") from exc
    bindings: set[Binding] = set()
    principals: dict[str, str] = {}
    for name, grant in file.principals.items():
        if _RECIPIENT in grant.principal:
            raise ConfigError(f"access of {name}: {_RECIPIENT} belongs in `partners` only")
        if grant.principal in principals:
            raise ConfigError(
                f"{grant.principal} is declared twice ({principals[grant.principal]}, {name})"
            )
        principals[grant.principal] = name
        read = _topics(grant.read, spec, name)
        write = _topics(grant.write, spec, name)
        bindings |= _bindings(grant, {"read": read, "write": write})
    pattern = None
    if file.partners is not None:
        template = file.partners
        if _RECIPIENT not in template.principal:
            raise ConfigError("access.partners.principal must contain {recipient}")
        if template.read or template.write:
            raise ConfigError("access.partners reads its policy sinks: no read/write list")
        for prefix in (*template.groups, *template.transactional_ids):
            if prefix.endswith(_RECIPIENT):
                raise ConfigError(
                    f"access.partners prefix {prefix!r} ends with {_RECIPIENT}: it would also "
                    "match a longer recipient's (partner-acme: partner-acme-2); end it with a "
                    "delimiter, e.g. partner-{recipient}."
                )
        head, _, tail = template.principal.partition(_RECIPIENT)
        pattern = re.compile(re.escape(head) + r"[A-Za-z0-9._-]+" + re.escape(tail))
        for recipient in sorted(set(recipients.values())):
            grant = _partner(template, recipient)
            if grant.principal in principals:
                raise ConfigError(
                    f"{grant.principal} is both a partner and {principals[grant.principal]}"
                )
            principals[grant.principal] = f"partner {recipient}"
            own = [t for t, r in recipients.items() if r == recipient]
            bindings |= _bindings(grant, {"read": own, "write": []})
    return AccessSpec(frozenset(bindings), frozenset(principals), pattern)


def load_access(path: Path | str) -> AccessSpec:
    """Read a topics file and resolve its ``access`` section (policy paths relative to it)."""
    path = Path(path)
    data = read_yaml(path)
    spec = parse_spec(data, base_dir=path.parent)
    recipients: dict[str, str] = {}
    source = data.get("sinks_from_policy") if isinstance(data, Mapping) else None
    if isinstance(source, Mapping) and isinstance(source.get("file"), str):
        policy_path = path.parent / source["file"]
        if source.get("required", True) or policy_path.exists():
            for topic, recipient in policy_sinks(read_yaml(policy_path)):
                if recipient is not None:
                    recipients[topic] = recipient
    access = data.get("access") if isinstance(data, Mapping) else None
    if access is None:
        raise ConfigError(f"{path} has no `access` section: nothing to apply")
    return parse_access(access, spec, recipients)
