"""Avro encoding of the repository's records.

- :class:`Serde`: ``encode(record, schema_name=None, *, wire_format=None) -> bytes`` and
  ``decode(raw, *, topic, partition, offset) -> Decoded`` / ``decode_model(...)``;
  Confluent wire format with a registry, Avro single-object encoding without.
- :class:`SchemaRepository`: every ``schemas/*.avsc`` (and released history) by full name
  and by CRC-64-AVRO fingerprint.
- :class:`RegistryUnavailableError`: a DecodeError caused by the registry, not the bytes.
"""

from __future__ import annotations

from consentgate.serde.confluent import RegistryUnavailableError
from consentgate.serde.facade import Serde
from consentgate.serde.repository import SchemaEntry, SchemaRepository, default_schemas_dir
from consentgate.serde.settings import SerdeSettings
from consentgate.serde.wire import Decoded, WireFormat

__all__ = [
    "Decoded",
    "RegistryUnavailableError",
    "SchemaEntry",
    "SchemaRepository",
    "Serde",
    "SerdeSettings",
    "WireFormat",
    "default_schemas_dir",
]
