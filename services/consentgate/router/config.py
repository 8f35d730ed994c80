"""The router's settings: one typed object with sections, built once.

Sources, lowest to highest precedence: defaults, a file (``--config FILE``, YAML with the same
section/field names), the environment (``CONSENTGATE_ROUTER_<SECTION>__<FIELD>``, e.g.
``CONSENTGATE_ROUTER_GATE__CONSENT_WAIT=3``) and the command line (``--gate.consent-wait 3``;
``consentgate router --help`` lists every field with its environment name). The cluster and
registry come from :class:`consentgate.settings.Settings` and
:class:`consentgate.serde.SerdeSettings` (``CONSENTGATE_BOOTSTRAP``, ``CONSENTGATE_SASL_*``,
``CONSENTGATE_SCHEMA_REGISTRY_*``): the router never looks for a development broker.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from consentgate.errors import ConfigError

__all__ = [
    "DEFAULT_POLICY",
    "GateSection",
    "LoopSection",
    "RouterConfig",
    "TopicsSection",
    "WebSection",
]

# relative to the working directory, as the operators' other files (deploy/topics.yaml) are;
# an image or a pod names its own (CONSENTGATE_ROUTER_POLICY, or --policy)
DEFAULT_POLICY = Path("deploy/policy.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicsSection(_Section):
    consent_state: str = Field(
        default="consent.state.v1", description="compacted consent timelines"
    )
    consent_changes: str = Field(default="consent.changes.v1", description="consent change log")
    decisions: str = Field(default="consentgate.decisions.v1", description="one decision per event")
    provisions: str = Field(default="consentgate.provisions.v1", description="provision ledger")
    dead_letters: str = Field(default="consentgate.dlq.v1", description="dead-letter topic")


class GateSection(_Section):
    consent_wait: float | None = Field(
        default=None,
        description="seconds an event may wait for the consent view (default: policy's)",
    )
    skew: float = Field(
        default=0.0, ge=0, description="wait for consent observed at event time + this (seconds)"
    )
    poll_interval: float = Field(
        default=0.05, gt=0, description="seconds between end-offset observations of consent.state"
    )


class LoopSection(_Section):
    commit_interval: float = Field(default=0.1, gt=0, description="seconds per transaction")
    batch: int = Field(default=2000, gt=0, description="records per consume() call")
    max_queued: int = Field(
        default=20000, gt=0, description="per-partition queue before pausing it"
    )
    shadow_every: int = Field(
        default=1000,
        ge=0,
        description="recheck 1 in N decisions uncached; stop on mismatch (0 = off)",
    )
    max_aborts: int = Field(
        default=5, gt=0, description="consecutive aborted transactions before stopping (exit 70)"
    )
    dlq_max_bytes: int = Field(
        default=900_000, gt=1000, description="raw bytes kept in a dead letter before truncating"
    )
    view_load_timeout: float = Field(
        default=300.0, gt=0, description="seconds to load a consent partition before giving up"
    )
    timeline_memory: int = Field(
        default=16384,
        ge=0,
        description="decoded consent timelines kept (LRU; repeat subjects skip the decode)",
    )
    gc_gen0: int = Field(
        default=50_000, gt=0, description="gc threshold of the young generation (Python: 700)"
    )
    transaction_timeout_ms: int = Field(
        default=30_000,
        gt=1000,
        description="transaction.timeout.ms of the producer, also the timeout of each "
        "transactional call (retried for 4x as long, then exit 70)",
    )


class WebSection(_Section):
    enabled: bool = Field(default=True, description="serve /healthz /readyz /metrics")
    host: str = Field(default="0.0.0.0", description="bind address")  # noqa: S104 - a service port
    port: int = Field(default=6066, description="HTTP port")


class RouterConfig(BaseSettings):
    """Everything a router worker needs besides the cluster and the policy's contents."""

    model_config = SettingsConfigDict(
        env_prefix="CONSENTGATE_ROUTER_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    policy: Path = Field(default=DEFAULT_POLICY, description="policy file")
    app_id: str = Field(default="consentgate-router", description="consumer group id")
    instance_id: str | None = Field(
        default=None,
        description="stable id of this worker (static membership and transactional.id); "
        "default: host name + web port",
    )
    topics: TopicsSection = Field(default_factory=TopicsSection)
    gate: GateSection = Field(default_factory=GateSection)
    loop: LoopSection = Field(default_factory=LoopSection)
    web: WebSection = Field(default_factory=WebSection)

    @property
    def member_id(self) -> str:
        return self.instance_id or f"{socket.gethostname()}-{self.web.port}"

    @property
    def transactional_id(self) -> str:
        return f"{self.app_id}-{self.member_id}"

    @classmethod
    def build(
        cls, file: Path | None = None, overrides: dict[str, Any] | None = None
    ) -> RouterConfig:
        """File < environment < ``overrides`` (dotted names: ``{"gate.skew": 1.0}``)."""
        data: dict[str, Any] = {}
        if file is not None:
            try:
                loaded = yaml.safe_load(file.read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"router config {file}: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ConfigError(f"router config {file}: expected a mapping")
            data = loaded
        env = cls.model_validate({})  # the environment over the defaults
        merged = _merge(data, env.model_dump(exclude_unset=True))
        for dotted, value in (overrides or {}).items():
            if value is None:
                continue
            node = merged
            *parents, leaf = dotted.split(".")
            for name in parents:
                node = node.setdefault(name, {})
            node[leaf] = value
        try:
            return cls.model_validate(merged)
        except ValueError as exc:
            raise ConfigError(f"router settings: {exc}") from exc


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def fields(model: type[BaseModel] = RouterConfig, prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf setting as (dotted name, pydantic FieldInfo), for ``--help``."""
    out: list[tuple[str, Any]] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, _Section):
            out.extend(fields(annotation, f"{prefix}{name}."))
        else:
            out.append((f"{prefix}{name}", info))
    return out
