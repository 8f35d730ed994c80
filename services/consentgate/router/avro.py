"""A small, exact Avro binary writer for the schema subset the router's records use.

fastavro pays a few µs of fixed cost per call, and a sink record or a decision is mostly
made of parts that repeat from sink to sink or event to event. Avro's binary encoding is a
plain concatenation of the fields in schema order (Avro spec, "Binary Encoding"), so the
router encodes such parts once and joins them. This module compiles a fastavro-parsed
schema into functions that write the same bytes fastavro writes, for: null, boolean, int,
long, double, string, enum, arrays, records, unions of null and one other type, and the
logical types uuid, timestamp-millis and date.

Two safety nets keep the output exactly fastavro's:
- a schema outside the subset does not compile (:func:`compile_schema` returns None), and a
  value outside what a compiled function knows raises :class:`Unsupported`: the caller then
  encodes that record through the serde as a whole;
- :class:`FastRecord` checks its first records against the serde's own encoding (and so
  learns the framing: single-object header or Confluent schema id), and encodes everything
  through the serde from the first difference on.
"""

from __future__ import annotations

import logging
import struct
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from consentgate.serde import Serde

__all__ = ["Encoder", "FastRecord", "Unsupported", "compile_schema", "long_bytes", "split_header"]

log = logging.getLogger(__name__)

Encoder = Callable[[Any], bytes]
"""Avro binary of one value of a compiled schema; raises Unsupported when unsure."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_INT_RANGE = range(-(2**31), 2**31)
_LONG_RANGE = range(-(2**63), 2**63)
_SMALL = [bytes([(n << 1) ^ (n >> 63)]) for n in range(-64, 64)]  # one-byte zig-zags
_DOUBLE = struct.Struct("<d")


class Unsupported(Exception):
    """This value is not one the fast writer is sure to write as fastavro does."""


def long_bytes(n: int) -> bytes:
    """Avro's binary encoding of a long: zig-zag, then base-128 varint."""
    if -64 <= n < 64:
        return _SMALL[n + 64]
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _null(v: Any) -> bytes:
    if v is not None:
        raise Unsupported("null")
    return b""


def _boolean(v: Any) -> bytes:
    if v is True:
        return b"\x01"
    if v is False:
        return b"\x00"
    raise Unsupported("boolean")


def _int(v: Any) -> bytes:
    if type(v) is not int or v not in _INT_RANGE:
        raise Unsupported("int")
    return long_bytes(v)


def _long(v: Any) -> bytes:
    if type(v) is not int or v not in _LONG_RANGE:
        raise Unsupported("long")
    return long_bytes(v)


def _double(v: Any) -> bytes:
    if type(v) is not float:
        raise Unsupported("double")
    return _DOUBLE.pack(v)


def _string(v: Any) -> bytes:
    if type(v) is not str:
        raise Unsupported("string")
    data = v.encode()
    n = len(data)
    return (_SMALL[n + 64] if n < 64 else long_bytes(n)) + data


# The bytes of the last event id and the last instant written, by identity (the same
# object, kept alive here, so its id is not reused): an event's id and ``now`` go into
# several of its records. One tuple each, replaced whole (atomic under the GIL).
_last_uuid: list[tuple[object, bytes]] = [(None, b"")]
_last_time: list[tuple[object, bytes]] = [(None, b"")]


def _uuid(v: Any) -> bytes:
    last, data = _last_uuid[0]
    if v is last:
        return data
    if type(v) is not uuid.UUID:
        return _string(v)
    data = _string(str(v))
    _last_uuid[0] = (v, data)
    return data


def _timestamp_millis(v: Any) -> bytes:
    last, data = _last_time[0]
    if v is last:
        return data
    if type(v) is not datetime or v.tzinfo is None:
        return _long(v)
    delta = v - _EPOCH
    data = _long((delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000)
    _last_time[0] = (v, data)
    return data


def _date(v: Any) -> bytes:
    if type(v) is date:
        return _int(v.toordinal() - _EPOCH_DAY)
    return _int(v)


_PRIMITIVES: dict[str, Encoder] = {
    "null": _null,
    "boolean": _boolean,
    "int": _int,
    "long": _long,
    "double": _double,
    "string": _string,
}
_LOGICAL: dict[tuple[str, str], Encoder] = {
    ("string", "uuid"): _uuid,
    ("long", "timestamp-millis"): _timestamp_millis,
    ("int", "date"): _date,
}


def compile_schema(schema: Any, named: Mapping[str, Any] | None = None) -> Encoder | None:
    """The writer of a fastavro-parsed ``schema`` (a part of one, with the top level's
    ``__named_schemas``), or None if it uses anything outside the subset."""
    if named is None and isinstance(schema, dict):
        named = schema.get("__named_schemas", {})
    return _compile(schema, named or {}, ())


def _compile(  # noqa: PLR0911 - one return per kind of schema
    schema: Any, named: Mapping[str, Any], seen: tuple[str, ...]
) -> Encoder | None:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        if schema in named and schema not in seen:
            return _compile(named[schema], named, (*seen, schema))
        return None
    if isinstance(schema, list):
        return _union(schema, named, seen)
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    logical = schema.get("logicalType")
    if logical is not None:
        return _LOGICAL.get((kind, logical)) if isinstance(kind, str) else None
    if kind == "enum":
        return _enum(schema["symbols"])
    if kind == "array":
        items = _compile(schema["items"], named, seen)
        return None if items is None else _array(items)
    if kind == "record":
        return _record(schema, named, seen)
    if isinstance(kind, (str, list)) and set(schema) <= {"type", "doc"}:
        return _compile(kind, named, seen)  # {"type": "string"} and the like
    return None


def _enum(symbols: list[str]) -> Encoder:
    index = {s: long_bytes(i) for i, s in enumerate(symbols)}

    def write(v: Any) -> bytes:
        if type(v) is not str or v not in index:
            raise Unsupported("enum")
        return index[v]

    return write


def _array(items: Encoder) -> Encoder:
    def write(v: Any) -> bytes:
        if type(v) is not list:
            raise Unsupported("array")
        if not v:
            return b"\x00"
        return b"".join([long_bytes(len(v)), *map(items, v), b"\x00"])

    return write


def _union(branches: list[Any], named: Mapping[str, Any], seen: tuple[str, ...]) -> Encoder | None:
    """Unions of null and at most one other type (what fastavro resolves unambiguously)."""
    others = [i for i, b in enumerate(branches) if b != "null"]
    if len(branches) > 2 or len(others) != 1 or len(branches) == 1:
        return None
    nulls = [i for i, b in enumerate(branches) if b == "null"]
    index = others[0]
    inner = _compile(branches[index], named, seen)
    if inner is None:
        return None
    tag, null = long_bytes(index), long_bytes(nulls[0])

    def write(v: Any) -> bytes:
        return null if v is None else tag + inner(v)

    return write


def _record(
    schema: Mapping[str, Any], named: Mapping[str, Any], seen: tuple[str, ...]
) -> Encoder | None:
    fields: list[tuple[str, Encoder, bool, Any]] = []
    for field in schema["fields"]:
        write = _compile(field["type"], named, seen)
        if write is None:
            return None
        fields.append((field["name"], write, "default" in field, field.get("default")))
    names = frozenset(name for name, *_ in fields)

    def write_record(v: Any) -> bytes:
        if type(v) is not dict or not names.issuperset(v):
            raise Unsupported("record")
        parts = []
        for name, write, has_default, default in fields:
            if name in v:
                parts.append(write(v[name]))
            elif has_default and default is None:
                parts.append(write(None))
            else:
                raise Unsupported("record field without a value")
        return b"".join(parts)

    return write_record


class FastRecord:
    """Records of one schema written by the compiled writer, framed as the serde frames them.

    The first ``checks`` records are also encoded by the serde and compared: the serde's
    bytes must be a header followed by exactly the compiled bytes (the header is learnt
    then). A difference turns the compiled writer off for good.
    """

    def __init__(self, serde: Serde, schema_name: str, *, checks: int = 16) -> None:
        self.serde = serde
        self.schema_name = schema_name
        self.parsed = serde.repository.current(schema_name).parsed
        self.body: Encoder | None = compile_schema(self.parsed)
        self.header: bytes | None = None
        self._checks = checks

    @property
    def trusted(self) -> bool:
        """Whether checked and still on: ``header + part bytes`` may be used as is."""
        return self.body is not None and self.header is not None and self._checks <= 0

    def encode(self, datum: Mapping[str, Any]) -> bytes:
        if self.body is None:
            return self.serde.encode(datum, self.schema_name)
        try:
            body = self.body(datum)
        except Unsupported:
            return self.serde.encode(datum, self.schema_name)
        if self.trusted and self.header is not None:
            return self.header + body
        return self.check(datum, body)

    def check(self, datum: Mapping[str, Any], body: bytes) -> bytes:
        """The serde's bytes for ``datum``, compared with ``body`` (fast bytes of it)."""
        whole = self.serde.encode(datum, self.schema_name)
        header = split_header(whole, body, self.header)
        if header is not None:
            self.header = header
            self._checks -= 1
        elif self.body is not None:
            log.warning("%s: fast encoding differs from the serde's, off", self.schema_name)
            self.body = None
        return whole


def split_header(whole: bytes, body: bytes, known: bytes | None) -> bytes | None:
    """The framing of ``whole`` if it is a (non-empty) header, the same as ``known`` if one
    is known already, followed by exactly ``body``; else None."""
    header = whole[: len(whole) - len(body)]
    if whole.endswith(body) and header and known in (None, header):
        return header
    return None
