"""Typed settings from the environment (``CONSENTGATE_`` prefix).

One object for every service; ``kafka_config()`` builds the librdkafka dict so that every
confluent-kafka client of the project is configured the same way (murmur2 partitioner
included, so keys land where faust/aiokafka and Java clients put them).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """All knobs, each overridable as ``CONSENTGATE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CONSENTGATE_", extra="ignore")

    bootstrap: str | None = Field(
        default=None, description="bootstrap servers of the cluster (every service needs them)"
    )
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    schema_registry_url: str | None = None

    def kafka_config(self, bootstrap: str | None = None, **extra: Any) -> dict[str, Any]:
        """The librdkafka configuration for a client of this cluster."""
        servers = bootstrap or self.bootstrap
        if not servers:
            raise ValueError("no bootstrap servers: resolve a cluster first")
        conf: dict[str, Any] = {
            "bootstrap.servers": servers,
            "security.protocol": self.security_protocol,
            # librdkafka's own log through Python logging: one log format for operators
            "logger": logging.getLogger("librdkafka"),
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else ""
            )
        conf.update(extra)
        return conf

    def producer_config(self, bootstrap: str | None = None, **extra: Any) -> dict[str, Any]:
        """A producer that partitions like Java and aiokafka (murmur2) and never loses acks."""
        conf = self.kafka_config(
            bootstrap,
            **{
                "partitioner": "murmur2_random",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
            },
        )
        conf.update(extra)
        return conf
