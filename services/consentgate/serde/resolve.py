"""Named Avro types across schema files: collect every definition, inline every reference.

A schema file may use a named type (record, enum, fixed) defined in another file by its full
name, e.g. ``"dev.consentgate.v1.Evidence"``. :func:`expand` turns such a schema into a
self-contained one: each named type is written out in full where it is first used and
referenced by full name after that, as the Avro spec requires. The self-contained form is
what fastavro, the ``avro`` package and the schema registry are given, so none of them needs
to know about the other files. Inlining does not change the Parsing Canonical Form (which
inlines named types at first use anyway), hence not the fingerprint either.
"""

from __future__ import annotations

import copy
from typing import Any

from consentgate.errors import SchemaError

__all__ = ["PRIMITIVES", "collect_definitions", "expand", "full_name"]

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})


def full_name(name: str, namespace: str | None) -> str:
    """The full name of ``name`` in ``namespace`` (a dotted name is already full)."""
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def _namespace_of(name: str) -> str:
    return name.rpartition(".")[0]


def _definition_name(schema: dict[str, Any], namespace: str | None) -> str:
    name = schema.get("name")
    if not isinstance(name, str) or not name:
        raise SchemaError(f"named type without a name: {schema!r:.120}")
    ns = schema.get("namespace", namespace)
    return full_name(name, ns if isinstance(ns, str) else None)


def collect_definitions(
    schema: Any, namespace: str | None, out: dict[str, dict[str, Any]], origin: str
) -> None:
    """Add every named type ``schema`` defines to ``out`` (full name -> definition).

    Each stored definition carries its full name, so it can be inlined anywhere.
    """
    if isinstance(schema, list):
        for branch in schema:
            collect_definitions(branch, namespace, out, origin)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if isinstance(kind, (dict, list)):
        collect_definitions(kind, namespace, out, origin)
    elif kind in _NAMED:
        name = _definition_name(schema, namespace)
        if name in out:
            raise SchemaError(f"{origin}: named type {name} is defined more than once")
        definition = {k: v for k, v in schema.items() if k != "namespace"}
        definition["name"] = name
        out[name] = definition
        for field in schema.get("fields", []):
            collect_definitions(field.get("type"), _namespace_of(name), out, origin)
    elif kind == "array":
        collect_definitions(schema.get("items"), namespace, out, origin)
    elif kind == "map":
        collect_definitions(schema.get("values"), namespace, out, origin)


def expand(
    schema: Any,
    namespace: str | None,
    definitions: dict[str, dict[str, Any]],
    defined: set[str] | None = None,
) -> Any:
    """A copy of ``schema`` with references to types of other files written out in full."""
    seen: set[str] = set() if defined is None else defined
    if isinstance(schema, str):
        return _expand_reference(schema, namespace, definitions, seen)
    if isinstance(schema, list):
        return [expand(branch, namespace, definitions, seen) for branch in schema]
    if not isinstance(schema, dict):
        raise SchemaError(f"not an Avro schema: {schema!r:.120}")
    kind = schema.get("type")
    out = dict(schema)
    if kind in _NAMED:
        name = _definition_name(schema, namespace)
        if name in seen:
            return name
        seen.add(name)
        out.pop("namespace", None)
        out["name"] = name
        if "fields" in schema:
            out["fields"] = [
                {**f, "type": expand(f.get("type"), _namespace_of(name), definitions, seen)}
                for f in schema["fields"]
            ]
    elif kind in ("array", "map"):
        child = "items" if kind == "array" else "values"
        out[child] = expand(schema.get(child), namespace, definitions, seen)
    elif kind not in PRIMITIVES:  # {"type": <a reference, union or nested schema>}
        out["type"] = expand(kind, namespace, definitions, seen)
    return out


def _expand_reference(
    reference: str, namespace: str | None, definitions: dict[str, dict[str, Any]], seen: set[str]
) -> Any:
    if reference in PRIMITIVES:
        return reference
    name = full_name(reference, namespace)
    if name in seen:
        return name
    if name not in definitions:
        raise SchemaError(f"unknown type {name!r} (not defined in any schema file)")
    return expand(copy.deepcopy(definitions[name]), namespace, definitions, seen)
