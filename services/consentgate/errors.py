"""The one exception tree of consentgate (the development package adds BrokerError).

ConsentgateError
├── ConfigError                 bad settings, policy file or topic declaration
│   └── PolicyError             the policy file is invalid (names the path of the bad entry)
├── ClusterError                no Kafka cluster could be found or reached
├── SchemaError                 a schema is missing, invalid, or incompatible with history
├── ValidationError             a record does not satisfy its model (names field path + value)
└── DecodeError                 bytes could not be decoded; carries topic, partition,
                                offset, the raw bytes and the reason (what a DLQ record needs)
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "ConfigError",
    "ConsentgateError",
    "DecodeError",
    "PolicyError",
    "SchemaError",
    "ValidationError",
]


class ConsentgateError(Exception):
    """Root of every error consentgate raises on purpose."""


class ConfigError(ConsentgateError):
    """Settings, policy or topic declarations are wrong."""


class PolicyError(ConfigError):
    """The policy file is invalid."""


class ClusterError(ConsentgateError):
    """No Kafka cluster could be found or reached."""


class SchemaError(ConsentgateError):
    """A schema is missing, invalid, or not backward compatible with its released history."""


class ValidationError(ConsentgateError):
    """A record does not satisfy its model.

    ``path`` is the dotted field path, ``value`` the offending value.
    """

    def __init__(self, message: str, *, path: str = "", value: object = None) -> None:
        super().__init__(message)
        self.path = path
        self.value = value


class DecodeError(ConsentgateError):
    """Bytes read from Kafka could not be decoded into a record.

    Carries everything a dead-letter record needs: where the bytes came from, the bytes
    themselves and why decoding failed.
    """

    def __init__(
        self,
        reason: str,
        *,
        raw: bytes | None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        where = f"{topic}[{partition}]@{offset}" if topic is not None else "<bytes>"
        super().__init__(f"cannot decode {where}: {reason}")
        self.reason = reason
        self.raw = raw
        self.topic = topic
        self.partition = partition
        self.offset = offset

    def at(self, topic: str, partition: int, offset: int) -> DecodeError:
        """The same error, located at a topic/partition/offset."""
        return DecodeError(
            self.reason, raw=self.raw, topic=topic, partition=partition, offset=offset
        )
