"""Schema fingerprints: CRC-64-AVRO (Rabin) of the Parsing Canonical Form, per the Avro spec.

The fingerprint identifies a writer schema in Avro single-object encoding. It is the 64-bit
Rabin fingerprint (polynomial ``0xC15D213AA4D7A795``) of the UTF-8 Parsing Canonical Form,
written as 8 bytes **little-endian**, as the Java implementation and the spec's
single-object encoding do. fastavro implements both halves; the unit tests check them
against the spec's published test vectors and an independent implementation.
"""

from __future__ import annotations

from typing import Any

from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

__all__ = ["crc64_avro", "fingerprint_int", "parsing_canonical_form"]


def parsing_canonical_form(schema: Any) -> str:
    """The Parsing Canonical Form of a self-contained schema (JSON value)."""
    return str(to_parsing_canonical_form(schema))


def crc64_avro(canonical_form: str) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of a canonical form."""
    return bytes.fromhex(_fastavro_fingerprint(canonical_form, "CRC-64-AVRO"))


def fingerprint_int(fingerprint: bytes) -> int:
    """The fingerprint as the signed 64-bit integer Java tools print."""
    return int.from_bytes(fingerprint, "little", signed=True)
