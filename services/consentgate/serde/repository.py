"""The repository's own schemas: every ``schemas/*.avsc`` plus the released history.

Layout of the schemas directory::

    schemas/<stem>.avsc                  current version, one named record per file; may
                                         use named types of other files by full name
    schemas/history/<stem>/v<N>.avsc     released versions, self-contained (see ``release``)

Every schema is loaded into a :class:`SchemaEntry`: its self-contained JSON, the fastavro
parsed form, the Parsing Canonical Form and the CRC-64-AVRO fingerprint. Lookup by full
name (or unambiguous short name) gives the current version; lookup by fingerprint gives any
version, so data written with a released version is still read (resolved to the current one).

The directory is ``$CONSENTGATE_SCHEMAS_DIR`` if set, else the schemas shipped inside the
package (``consentgate/schemas``, package data read through importlib.resources; in a checkout
the top-level ``schemas/`` is a link to it).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import fastavro

from consentgate.errors import SchemaError
from consentgate.serde.fingerprint import crc64_avro, parsing_canonical_form
from consentgate.serde.resolve import collect_definitions, expand

__all__ = ["SCHEMAS_DIR_ENV", "SchemaEntry", "SchemaRepository", "default_schemas_dir"]

SCHEMAS_DIR_ENV = "CONSENTGATE_SCHEMAS_DIR"
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


def default_schemas_dir() -> Path:
    """``$CONSENTGATE_SCHEMAS_DIR``, else the schemas shipped in the package."""
    configured = os.environ.get(SCHEMAS_DIR_ENV)
    if configured:
        return Path(configured)
    # installed packages are directories (pip never installs a zipped wheel), so the
    # Traversable is a real path; str() of it is what Path needs
    return Path(str(files("consentgate") / "schemas"))


@dataclass(frozen=True, slots=True)
class SchemaEntry:
    """One version of one schema."""

    name: str  # full name, e.g. dev.consentgate.v1.BrowsingEvent
    path: Path
    version: int | None  # None for the current version, N for history/<stem>/vN.avsc
    schema: dict[str, Any]  # self-contained JSON (named types of other files inlined)
    text: str  # that JSON as a string (what the registry and the avro package get)
    parsed: Any  # fastavro parse_schema(schema)
    canonical: str  # Parsing Canonical Form
    fingerprint: bytes  # CRC-64-AVRO of canonical, 8 bytes little-endian

    @property
    def stem(self) -> str:
        """The file stem naming this schema's history directory."""
        return self.path.stem if self.version is None else self.path.parent.name


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path}: cannot read schema: {exc}") from exc


def _entry(path: Path, raw: Any, definitions: dict[str, Any], version: int | None) -> SchemaEntry:
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise SchemaError(f"{path}: the top level must be a named record")
    try:
        schema = expand(raw, None, definitions)
        parsed = fastavro.parse_schema(schema)
        canonical = parsing_canonical_form(schema)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from exc
    except Exception as exc:  # fastavro raises assorted types for invalid schemas
        raise SchemaError(f"{path}: invalid Avro schema: {exc}") from exc
    return SchemaEntry(
        name=schema["name"],
        path=path,
        version=version,
        schema=schema,
        text=json.dumps(schema, separators=(",", ":")),
        parsed=parsed,
        canonical=canonical,
        fingerprint=crc64_avro(canonical),
    )


class SchemaRepository:
    """All schemas of one schemas directory, current and released."""

    def __init__(self, directory: Path, current: list[SchemaEntry], history: list[SchemaEntry]):
        self.directory = directory
        self._current = {e.name: e for e in current}
        self._short: dict[str, str | None] = {}
        for name in self._current:
            short = name.rpartition(".")[2]
            self._short[short] = None if short in self._short else name
        self._history: dict[str, list[SchemaEntry]] = {}
        for entry in sorted(history, key=lambda e: (e.name, e.version or 0)):
            self._history.setdefault(entry.name, []).append(entry)
        self._by_fingerprint = {e.fingerprint: e for e in history}
        self._by_fingerprint.update({e.fingerprint: e for e in current})

    @classmethod
    def load(cls, directory: Path | str | None = None) -> SchemaRepository:
        """Load and check every schema of ``directory`` (default: :func:`default_schemas_dir`)."""
        root = Path(directory) if directory is not None else default_schemas_dir()
        files = sorted(root.glob("*.avsc"))
        if not files:
            raise SchemaError(f"no *.avsc schemas in {root} (set {SCHEMAS_DIR_ENV})")
        raws = {path: _read_json(path) for path in files}
        definitions: dict[str, Any] = {}
        for path, raw in raws.items():
            collect_definitions(raw, None, definitions, str(path))
        current = [_entry(path, raw, definitions, None) for path, raw in raws.items()]
        names = [e.name for e in current]
        if len(set(names)) != len(names):
            raise SchemaError(f"{root}: two files define the same top-level record")
        history = []
        for path in sorted(root.glob("history/*/*.avsc")):
            match = _VERSION_FILE.match(path.name)
            if match is None:
                raise SchemaError(f"{path}: history files are named v<N>.avsc")
            raw = _read_json(path)
            own: dict[str, Any] = {}
            collect_definitions(raw, None, own, str(path))
            history.append(_entry(path, raw, own, int(match.group(1))))
        return cls(root, current, history)

    def names(self) -> list[str]:
        """Full names of the current schemas, sorted."""
        return sorted(self._current)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def find(self, name: str) -> SchemaEntry | None:
        """The current version of ``name`` (full name or unambiguous short name), if any."""
        entry = self._current.get(name)
        if entry is None and (full := self._short.get(name)) is not None:
            entry = self._current[full]
        return entry

    def current(self, name: str) -> SchemaEntry:
        """The current version of ``name``; SchemaError when there is none."""
        entry = self.find(name)
        if entry is None:
            raise SchemaError(f"no schema named {name!r} in {self.directory}")
        return entry

    def by_fingerprint(self, fingerprint: bytes) -> SchemaEntry | None:
        """The version (current preferred) whose canonical form has ``fingerprint``."""
        return self._by_fingerprint.get(fingerprint)

    def history(self, name: str) -> list[SchemaEntry]:
        """Released versions of ``name`` (full name), oldest first."""
        return list(self._history.get(name, []))

    def released_names(self) -> list[str]:
        """Full names that have released versions (including ones with no current schema)."""
        return sorted(self._history)
