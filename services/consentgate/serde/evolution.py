"""Schema evolution: released versions in ``schemas/history/`` must stay readable.

Backward compatibility, as the Avro spec's schema resolution defines it: the current version
of each record (reader) must be able to read data written with every released version of it
(writer). Checked with the ``avro`` package's ``ReaderWriterCompatibilityChecker``, the port
of the Java checker that schema registries use.

Releasing snapshots the current version of every schema whose Parsing Canonical Form changed
since its latest release (doc-only edits need no release) as the next
``history/<stem>/v<N>.avsc``, in self-contained form, so later edits to shared types in other
files cannot change what a released version means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from consentgate.errors import SchemaError
from consentgate.serde.repository import SchemaEntry, SchemaRepository

__all__ = ["Incompatibility", "check_backward", "release"]


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """The current version of ``name`` cannot read data written with a released version."""

    name: str
    released: Path
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return (
            f"{self.name}: the current schema cannot read data written with {self.released}: "
            + "; ".join(self.reasons)
        )


def _parse(entry: SchemaEntry) -> avro.schema.Schema:
    try:
        return avro.schema.parse(entry.text)
    except Exception as exc:  # the avro package raises its own SchemaParseException tree
        raise SchemaError(f"{entry.path}: the avro package rejects the schema: {exc}") from exc


def _field_path(schema: Any, location: str) -> str:
    """``/fields/13/type`` -> ``gpc (/fields/13/type)``: the reader fields a location names."""
    node, names, previous = schema, [], ""
    for token in location.strip("/").split("/"):
        if isinstance(node, dict):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
            if previous == "fields" and isinstance(node, dict):
                names.append(str(node.get("name")))
        else:
            break
        previous = token
    return f"{'.'.join(names) or '<record>'} ({location})"


def _reasons(reader: SchemaEntry, writer: SchemaEntry) -> tuple[str, ...]:
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]  # avro: no hints
    result = checker.get_compatibility(_parse(reader), _parse(writer))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return ()
    kinds = sorted({kind.value for kind in result.incompatibilities})
    where = ", ".join(_field_path(reader.schema, loc) for loc in sorted(result.locations))
    return (*kinds, *sorted(result.messages), f"at {where}")


def check_backward(repository: SchemaRepository) -> list[Incompatibility]:
    """Every (schema, released version) pair the current schema cannot read."""
    problems = []
    for name in repository.released_names():
        reader = repository.find(name)
        for released in repository.history(name):
            if reader is None:
                reasons: tuple[str, ...] = ("the record has no current schema any more",)
            elif released.fingerprint == reader.fingerprint:
                continue
            else:
                reasons = _reasons(reader, released)
            if reasons:
                problems.append(Incompatibility(name, released.path, reasons))
    return problems


def release(repository: SchemaRepository) -> list[Path]:
    """Write the next history version of every schema that changed; the files written."""
    written = []
    for name in repository.names():
        current = repository.current(name)
        history = repository.history(name)
        if history and history[-1].fingerprint == current.fingerprint:
            continue
        version = (history[-1].version or 0) + 1 if history else 1
        path = repository.directory / "history" / current.stem / f"v{version}.avsc"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(current.schema, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written
