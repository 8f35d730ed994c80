"""The two wire formats a value can arrive in, told apart by their first bytes.

- Avro single-object encoding (Avro spec): ``C3 01``, the writer schema's 8-byte
  little-endian CRC-64-AVRO fingerprint, then the Avro binary datum. The embedded default:
  schemas are resolved from ``schemas/`` by fingerprint, no registry involved.
- Confluent wire format: magic byte ``00``, the 4-byte big-endian schema registry id, then
  the Avro binary datum. What Kafka Connect, Flink, Spark and ksqlDB read; needs a registry.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

from consentgate.errors import DecodeError

__all__ = [
    "CONFLUENT_HEADER_SIZE",
    "CONFLUENT_MAGIC",
    "SINGLE_OBJECT_HEADER_SIZE",
    "SINGLE_OBJECT_MAGIC",
    "Decoded",
    "WireFormat",
    "detect_format",
    "explain",
]

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
SINGLE_OBJECT_HEADER_SIZE = 10  # magic + 8-byte fingerprint
CONFLUENT_MAGIC = 0
CONFLUENT_HEADER_SIZE = 5  # magic + 4-byte schema id


class WireFormat(enum.StrEnum):
    """How an Avro datum is framed on the wire."""

    SINGLE_OBJECT = "single-object"
    CONFLUENT = "confluent"


class Decoded(NamedTuple):
    """A decoded value: the full name of its (current) schema and the Avro datum."""

    name: str
    value: dict[str, Any]


def detect_format(raw: bytes) -> WireFormat:
    """The wire format ``raw`` claims by its first bytes; DecodeError for anything else."""
    if not raw:
        raise DecodeError("empty value (0 bytes)", raw=raw)
    if raw[0] == CONFLUENT_MAGIC:
        return WireFormat.CONFLUENT
    if raw[:2] == SINGLE_OBJECT_MAGIC:
        return WireFormat.SINGLE_OBJECT
    raise DecodeError(
        f"unknown framing: first bytes {raw[:2].hex(' ')}; expected 00 (Confluent wire "
        "format) or c3 01 (Avro single-object encoding)",
        raw=raw,
    )


def explain(error: BaseException) -> str:
    """A reader error as a reason: its type and message (truncation said as such)."""
    if isinstance(error, EOFError):
        return f"truncated datum: {error or 'unexpected end of data'}"
    return f"{type(error).__name__}: {error}"
