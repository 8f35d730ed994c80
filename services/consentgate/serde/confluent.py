"""Confluent wire format through confluent-kafka's registry serdes.

Encoding uses ``AvroSerializer`` with the **record name strategy**: the subject is the
record's full name (e.g. ``dev.consentgate.v1.BrowsingEvent``), whatever the topic, so one
subject holds one record type's evolution and one topic may carry several record types.
The schema registered is the self-contained form from :class:`SchemaRepository`.

Decoding reads the 4-byte schema id, asks the registry (cached) which record that id is,
and decodes with an ``AvroDeserializer`` whose reader schema is the repository's current
version of that record, so older writer versions resolve to the current shape.

A registry that cannot be reached is not bad data: that failure is raised as
:class:`RegistryUnavailableError`, a DecodeError the caller may retry instead of
dead-lettering.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

from confluent_kafka.schema_registry import (
    Schema,
    SchemaRegistryClient,
    SchemaRegistryError,
    prefix_schema_id_deserializer,
    record_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from consentgate.errors import DecodeError, SchemaError
from consentgate.serde.repository import SchemaEntry, SchemaRepository
from consentgate.serde.resolve import full_name
from consentgate.serde.wire import CONFLUENT_HEADER_SIZE, CONFLUENT_MAGIC, Decoded, explain

__all__ = ["ConfluentCodec", "RegistryUnavailableError"]

_HTTP_NOT_FOUND = 404


class RegistryUnavailableError(DecodeError):
    """The schema registry could not answer; the bytes may be fine. Retry, don't dead-letter."""

    def at(self, topic: str, partition: int, offset: int) -> RegistryUnavailableError:
        return RegistryUnavailableError(
            self.reason, raw=self.raw, topic=topic, partition=partition, offset=offset
        )


class _DecodeContext(SerializationContext):
    """A per-call context that remembers the payload stream, to check it was used up."""

    def __init__(self) -> None:
        super().__init__("", MessageField.VALUE)
        self.payload: io.BytesIO | None = None


def _remember_payload(data: bytes, ctx: Any, schema_id: Any) -> io.BytesIO:
    payload: io.BytesIO = prefix_schema_id_deserializer(data, ctx, schema_id)
    if isinstance(ctx, _DecodeContext):
        ctx.payload = payload
    return payload


class ConfluentCodec:
    """Encode and decode the Confluent wire format with one registry client."""

    def __init__(
        self, repository: SchemaRepository, client: SchemaRegistryClient, *, auto_register: bool
    ) -> None:
        self._repository = repository
        self._client = client
        self._auto_register = auto_register
        self._serializers: dict[bytes, AvroSerializer] = {}  # by writer fingerprint
        self._deserializers: dict[str, AvroDeserializer] = {}
        self._names: dict[int, str] = {}

    def encode(self, entry: SchemaEntry, datum: Mapping[str, Any]) -> bytes:
        """Frame ``datum`` written with ``entry``; fastavro errors propagate (caller wraps).

        Unknown fields are errors; missing fields take their schema default.
        """
        serializer = self._serializers.get(entry.fingerprint)
        if serializer is None:
            self._register(entry)
            serializer = AvroSerializer(
                self._client,
                entry.text,
                conf={
                    "auto.register.schemas": self._auto_register,
                    "subject.name.strategy": record_subject_name_strategy,
                    "validate.strict.allow.default": True,
                },
            )
            self._serializers[entry.fingerprint] = serializer
        out = serializer(datum, None)
        if out is None:  # only a None datum serializes to None
            raise SchemaError(f"{entry.name}: nothing to encode")
        return bytes(out)

    def _register(self, entry: SchemaEntry) -> None:
        """Register (or look up) ``entry`` under its subject, so that registry trouble is a
        SchemaError here rather than a confusing failure inside the serializer."""
        schema = Schema(entry.text, "AVRO")
        try:
            if self._auto_register:
                self._client.register_schema(entry.name, schema)
            else:
                self._client.lookup_schema(entry.name, schema)
        except SchemaRegistryError as exc:
            raise SchemaError(f"schema registry refused {entry.name}: {exc}") from exc
        except Exception as exc:  # transport errors: connection refused, timeouts, TLS
            raise SchemaError(
                f"schema registry unreachable while registering {entry.name}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def decode(self, raw: bytes) -> Decoded:
        """Decode ``raw``; every failure is a DecodeError (without a location)."""
        if len(raw) <= CONFLUENT_HEADER_SIZE or raw[0] != CONFLUENT_MAGIC:
            raise DecodeError(
                f"Confluent wire format needs magic byte 00, a 4-byte schema id and a datum; "
                f"got {len(raw)} bytes starting {raw[:1].hex()}",
                raw=raw,
            )
        schema_id = int.from_bytes(raw[1:CONFLUENT_HEADER_SIZE], "big")
        name = self._name_of(schema_id, raw)
        ctx = _DecodeContext()
        try:
            value = self._deserializer(name)(raw, ctx)
        except Exception as exc:  # the serdes raise SerializationError, fastavro errors, ...
            raise DecodeError(
                f"invalid {name} datum (schema id {schema_id}): {explain(exc)}",
                raw=raw,
            ) from exc
        payload = ctx.payload
        if payload is not None and payload.tell() != len(payload.getbuffer()):
            extra = len(payload.getbuffer()) - payload.tell()
            raise DecodeError(f"{extra} trailing bytes after the {name} datum", raw=raw)
        if not isinstance(value, dict):
            raise DecodeError(f"{name} datum is not a record", raw=raw)
        return Decoded(name, value)

    def _deserializer(self, name: str) -> AvroDeserializer:
        deserializer = self._deserializers.get(name)
        if deserializer is None:
            deserializer = AvroDeserializer(
                self._client,
                self._repository.current(name).text,
                conf={
                    "subject.name.strategy": record_subject_name_strategy,
                    "schema.id.deserializer": _remember_payload,
                },
            )
            self._deserializers[name] = deserializer
        return deserializer

    def _name_of(self, schema_id: int, raw: bytes) -> str:
        """The full record name registered under ``schema_id`` (cached)."""
        name = self._names.get(schema_id)
        if name is not None:
            return name
        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == _HTTP_NOT_FOUND:
                raise DecodeError(f"schema id {schema_id} is not in the registry", raw=raw) from exc
            raise RegistryUnavailableError(
                f"schema registry lookup of id {schema_id} failed: {exc}", raw=raw
            ) from exc
        except Exception as exc:  # transport errors: connection refused, timeouts, TLS
            raise RegistryUnavailableError(
                f"schema registry lookup of id {schema_id} failed: {type(exc).__name__}: {exc}",
                raw=raw,
            ) from exc
        try:
            registered = json.loads(schema.schema_str or "null")
            if schema.schema_type not in (None, "AVRO") or not isinstance(registered, dict):
                raise ValueError("not an Avro record schema")
            name = full_name(str(registered["name"]), registered.get("namespace"))
        except (ValueError, KeyError, TypeError) as exc:
            raise DecodeError(
                f"schema id {schema_id} is not an Avro record: {exc}", raw=raw
            ) from exc
        if name not in self._repository:
            raise DecodeError(
                f"schema id {schema_id} is {name}, which is not in {self._repository.directory}",
                raw=raw,
            )
        name = self._repository.current(name).name
        self._names[schema_id] = name
        return name
