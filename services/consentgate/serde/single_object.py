"""Avro single-object encoding (Avro spec), with writer schemas found by fingerprint.

``C3 01`` + CRC-64-AVRO fingerprint of the writer schema (8 bytes, little-endian) + the
Avro binary datum. Decoding looks the fingerprint up in the :class:`SchemaRepository`
(current and released versions) and reads with the current version of that record as the
reader schema, so data written with a released version is resolved to the current shape.
Every decoded value must use up the input exactly: trailing bytes are an error.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from consentgate.errors import DecodeError
from consentgate.serde.repository import SchemaEntry, SchemaRepository
from consentgate.serde.wire import (
    SINGLE_OBJECT_HEADER_SIZE,
    SINGLE_OBJECT_MAGIC,
    Decoded,
    explain,
)

__all__ = ["SingleObjectCodec"]


class SingleObjectCodec:
    """Encode and decode the single-object format against one schema repository."""

    def __init__(self, repository: SchemaRepository) -> None:
        self._repository = repository

    def encode(self, entry: SchemaEntry, datum: Mapping[str, Any]) -> bytes:
        """Frame ``datum`` written with ``entry``; fastavro errors propagate (caller wraps).

        Unknown fields are errors; missing fields take their schema default.
        """
        buf = io.BytesIO()
        buf.write(SINGLE_OBJECT_MAGIC)
        buf.write(entry.fingerprint)
        schemaless_writer(buf, entry.parsed, datum, strict_allow_default=True)
        return buf.getvalue()

    def decode(self, raw: bytes) -> Decoded:
        """Decode ``raw``; every failure is a DecodeError (without a location)."""
        if len(raw) < SINGLE_OBJECT_HEADER_SIZE:
            raise DecodeError(
                f"truncated single-object header: {len(raw)} of {SINGLE_OBJECT_HEADER_SIZE} bytes",
                raw=raw,
            )
        if raw[:2] != SINGLE_OBJECT_MAGIC:
            raise DecodeError(f"not single-object encoded (starts {raw[:2].hex(' ')})", raw=raw)
        fingerprint = raw[2:SINGLE_OBJECT_HEADER_SIZE]
        writer = self._repository.by_fingerprint(fingerprint)
        if writer is None:
            raise DecodeError(
                f"unknown schema fingerprint {fingerprint.hex()} (no current or released "
                f"schema in {self._repository.directory} has it)",
                raw=raw,
            )
        reader = self._repository.find(writer.name)
        if reader is None:
            raise DecodeError(f"{writer.name} was released but has no current schema", raw=raw)
        buf = io.BytesIO(raw)
        buf.seek(SINGLE_OBJECT_HEADER_SIZE)
        try:
            value = schemaless_reader(
                buf, writer.parsed, None if reader is writer else reader.parsed
            )
        except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, ...
            raise DecodeError(f"invalid {writer.name} datum: {explain(exc)}", raw=raw) from exc
        if buf.tell() != len(raw):
            raise DecodeError(
                f"{len(raw) - buf.tell()} trailing bytes after the {writer.name} datum", raw=raw
            )
        if not isinstance(value, dict):
            raise DecodeError(f"{writer.name} datum is not a record", raw=raw)
        return Decoded(reader.name, value)
