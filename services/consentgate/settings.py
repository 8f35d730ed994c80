"""Typed settings from the environment (``CONSENTGATE_`` prefix).

One object for every service; ``kafka_config()`` builds the librdkafka dict so that every
confluent-kafka client of the project is configured the same way (murmur2 partitioner
included, so keys land where faust/aiokafka and Java clients put them), and
``ssl_context()`` the TLS context for the Python (aiokafka) clients. Security settings are
checked when a client is configured: an unknown protocol, SASL settings without a SASL
protocol, or half a client certificate is a ConfigError, not a client that silently
connects without what the operator asked for.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from consentgate.errors import ConfigError
from consentgate.kafka_log import librdkafka_logger

__all__ = ["PROTOCOLS", "Settings"]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


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
    # TLS (SSL, SASL_SSL): the CA the brokers' certificates chain to (default: the system's),
    # and a client certificate and key for mutual TLS
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_endpoint_identification: bool = Field(
        default=True, description="verify that the broker's certificate names its host"
    )
    schema_registry_url: str | None = None

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.upper() in ("SSL", "SASL_SSL")

    def _check_security(self) -> None:
        protocol = self.security_protocol.upper()
        if protocol not in PROTOCOLS:
            raise ConfigError(
                f"CONSENTGATE_SECURITY_PROTOCOL={self.security_protocol!r}: one of "
                f"{', '.join(PROTOCOLS)}"
            )
        if self.sasl_mechanism and not protocol.startswith("SASL_"):
            raise ConfigError(
                f"CONSENTGATE_SASL_MECHANISM is set but the protocol is {protocol}: use "
                "SASL_SSL (or SASL_PLAINTEXT on a trusted network)"
            )
        if protocol.startswith("SASL_") and not self.sasl_mechanism:
            raise ConfigError(f"{protocol} needs CONSENTGATE_SASL_MECHANISM (e.g. SCRAM-SHA-512)")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ConfigError(
                "mutual TLS needs both CONSENTGATE_SSL_CERTIFICATE_LOCATION and "
                "CONSENTGATE_SSL_KEY_LOCATION"
            )

    def ssl_context(self) -> ssl.SSLContext | None:
        """For Python clients (aiokafka, under the consent fold): the TLS context the
        settings describe, or None without TLS."""
        self._check_security()
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=str(self.ssl_ca_location) if self.ssl_ca_location else None,
        )
        context.check_hostname = self.ssl_endpoint_identification
        if self.ssl_certificate_location is not None and self.ssl_key_location is not None:
            context.load_cert_chain(
                str(self.ssl_certificate_location),
                str(self.ssl_key_location),
                self.ssl_key_password.get_secret_value() if self.ssl_key_password else None,
            )
        return context

    def kafka_config(self, bootstrap: str | None = None, **extra: Any) -> dict[str, Any]:
        """The librdkafka configuration for a client of this cluster."""
        servers = bootstrap or self.bootstrap
        if not servers:
            raise ValueError("no bootstrap servers: resolve a cluster first")
        self._check_security()
        conf: dict[str, Any] = {
            "bootstrap.servers": servers,
            "security.protocol": self.security_protocol.upper(),
            # librdkafka's own log through Python logging: one log format for operators
            "logger": librdkafka_logger(),
            # after a broker restart librdkafka could keep a broker out of its cache ("new
            # leader-1 not found in cache") until the next full metadata refresh: 5 min by
            # default, during which the router's transactions and end-offset requests stalled
            # (test_faults_broker); a refresh every 10 s bounds that
            "topic.metadata.refresh.interval.ms": 10_000,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else ""
            )
        if self.uses_tls:
            conf["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_endpoint_identification else "none"
            )
            tls = {
                "ssl.ca.location": self.ssl_ca_location,
                "ssl.certificate.location": self.ssl_certificate_location,
                "ssl.key.location": self.ssl_key_location,
            }
            conf.update({k: str(v) for k, v in tls.items() if v is not None})
            if self.ssl_key_password is not None:
                conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
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
