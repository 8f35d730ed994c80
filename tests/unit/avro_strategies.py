"""Hypothesis strategies built from an Avro schema, generically.

``datums(schema)`` draws values that fastavro writes and reads back equal: timestamps are
UTC and millisecond-exact, uuid strings are ``uuid.UUID`` (what fastavro returns), floats
are 32-bit exact, no NaN (NaN != NaN). Works on any self-contained schema, so new schema
files are covered without touching the tests.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from hypothesis import strategies as st

__all__ = ["datums"]

_INT = (-(2**31), 2**31 - 1)
_LONG = (-(2**63), 2**63 - 1)
_MIN_TIME = datetime(1900, 1, 1)
_MAX_TIME = datetime(2200, 1, 1)


def _millis(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _float32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


class _Builder:
    def __init__(
        self, *, nonempty_strings: bool, finite: bool, overrides: Mapping[str, Any]
    ) -> None:
        self.named: dict[str, st.SearchStrategy[Any]] = {}
        self.min_text = 1 if nonempty_strings else 0
        self.finite = finite
        self.overrides = overrides

    def primitive(self, kind: str) -> st.SearchStrategy[Any]:
        strategies: dict[str, st.SearchStrategy[Any]] = {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(*_INT),
            "long": st.integers(*_LONG),
            "float": st.floats(width=32, allow_nan=False, allow_infinity=not self.finite).map(
                _float32
            ),
            "double": st.floats(allow_nan=False, allow_infinity=not self.finite),
            "bytes": st.binary(max_size=24),
            "string": st.text(min_size=self.min_text, max_size=24),
        }
        return strategies[kind]

    def logical(self, logical: str | None, kind: Any) -> st.SearchStrategy[Any] | None:
        if logical in ("timestamp-millis", "timestamp-micros") and kind == "long":
            times = st.datetimes(_MIN_TIME, _MAX_TIME, timezones=st.just(UTC))
            return times.map(_millis) if logical == "timestamp-millis" else times
        if logical == "date" and kind == "int":
            return st.dates(date(1900, 1, 1), date(2200, 1, 1))
        if logical == "uuid" and kind == "string":
            return st.uuids()
        return None

    def build(self, schema: Any, namespace: str | None) -> st.SearchStrategy[Any]:
        if isinstance(schema, str):
            return self.reference(schema, namespace)
        if isinstance(schema, list):
            return st.one_of([self.build(branch, namespace) for branch in schema])
        kind = schema["type"]
        strategy = self.logical(schema.get("logicalType"), kind)
        if strategy is None and kind in ("record", "error"):
            strategy = self.record(schema, namespace)
        elif strategy is None:
            strategy = self.unnamed(schema, kind, namespace)
        return strategy

    def reference(self, schema: str, namespace: str | None) -> st.SearchStrategy[Any]:
        if schema in ("null", "boolean", "int", "long", "float", "double", "bytes", "string"):
            return self.primitive(schema)
        name = schema if "." in schema or not namespace else f"{namespace}.{schema}"
        return st.deferred(lambda: self.named[name])

    def unnamed(
        self, schema: Mapping[str, Any], kind: Any, namespace: str | None
    ) -> st.SearchStrategy[Any]:
        if kind == "enum":
            return st.sampled_from(schema["symbols"])
        if kind == "fixed":
            return st.binary(min_size=schema["size"], max_size=schema["size"])
        if kind == "array":
            return st.lists(self.build(schema["items"], namespace), max_size=3)
        if kind == "map":
            return st.dictionaries(st.text(max_size=8), self.build(schema["values"], namespace))
        return self.build(kind, namespace)

    def record(self, schema: Mapping[str, Any], namespace: str | None) -> st.SearchStrategy[Any]:
        name = schema["name"]
        ns = schema.get("namespace", namespace)
        if "." not in name and ns:
            name = f"{ns}.{name}"
        inner_ns = name.rpartition(".")[0] or None
        fields = {
            f["name"]: self.overrides[f["name"]]
            if f["name"] in self.overrides
            else self.build(f["type"], inner_ns)
            for f in schema["fields"]
        }
        strategy = st.fixed_dictionaries(fields)
        self.named[name] = strategy
        return strategy


def datums(
    schema: Any,
    *,
    nonempty_strings: bool = False,
    finite: bool = False,
    overrides: Mapping[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Values of ``schema`` (a self-contained Avro schema as JSON)."""
    builder = _Builder(nonempty_strings=nonempty_strings, finite=finite, overrides=overrides or {})
    return builder.build(schema, None)
