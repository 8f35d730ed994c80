"""Reading a policy file: YAML -> validated :class:`Policy`, or a PolicyError naming the entry.

This is the policy package's only I/O (the file, and the schemas the field names are checked
against). Duplicate YAML keys are refused rather than silently overwritten. Every problem is
reported at once, one line each, as ``<file>: <path>: <what is wrong>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import yaml

from consentgate.errors import ConsentgateError, PolicyError
from consentgate.policy.model import Policy
from consentgate.policy.validate import SchemaFields, validate

__all__ = ["CheckedPolicy", "check_policy", "load_policy", "parse_policy", "schema_fields"]

log = logging.getLogger(__name__)

_NAMED = {"sources": "name", "sinks": "name", "recipients": "id"}


@dataclass(frozen=True)
class CheckedPolicy:
    """A valid policy and what the operator should be warned about."""

    policy: Policy
    warnings: tuple[str, ...]


def load_policy(path: Path | str, *, schemas: SchemaFields | None = None) -> Policy:
    """The policy in ``path`` (warnings logged); PolicyError if it is invalid."""
    checked = check_policy(path, schemas=schemas)
    for warning in checked.warnings:
        log.warning("policy %s: %s", path, warning)
    return checked.policy


def check_policy(path: Path | str, *, schemas: SchemaFields | None = None) -> CheckedPolicy:
    """Read and check ``path``; field names are checked against ``schemas``, by default the
    repository's ``schemas/`` (``$CONSENTGATE_SCHEMAS_DIR``) when they can be loaded."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read policy: {exc}") from exc
    extra: tuple[str, ...] = ()
    if schemas is None:
        try:
            schemas = schema_fields()
        except ConsentgateError as exc:
            extra = (f"schemas not loaded, field names not checked: {exc}",)
    checked = parse_policy(text, origin=str(path), schemas=schemas)
    return CheckedPolicy(checked.policy, extra + checked.warnings)


def parse_policy(
    text: str, *, origin: str = "<policy>", schemas: SchemaFields | None = None
) -> CheckedPolicy:
    """Parse and check policy YAML (pure: no file or schema I/O)."""
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506  a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyError(f"{origin}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PolicyError(f"{origin}: the top level must be a mapping of policy sections")
    try:
        policy = Policy.model_validate(raw)
    except pydantic.ValidationError as exc:
        lines = [f"{origin}: {_path(e['loc'], raw)}: {e['msg']}" for e in exc.errors()]
        raise PolicyError("\n".join(lines)) from exc
    findings = validate(policy, schemas)
    if findings.errors:
        raise PolicyError("\n".join(f"{origin}: {e}" for e in findings.errors))
    return CheckedPolicy(policy, tuple(findings.warnings))


def schema_fields(schemas_dir: Path | None = None) -> SchemaFields:
    """Top-level fields (and their pii marks) of every schema in the schemas directory."""
    from consentgate.serde.repository import SchemaRepository  # noqa: PLC0415  I/O edge only

    repository = SchemaRepository.load(schemas_dir)
    out: dict[str, dict[str, bool]] = {}
    for name in repository.names():
        schema = repository.current(name).schema
        out[name] = {f["name"]: bool(f.get("pii", False)) for f in schema.get("fields", [])}
    return out


def _path(loc: tuple[int | str, ...], raw: Any) -> str:
    """``('sinks', 3, 'recipient')`` -> ``sinks[3] (partner.acme.browsing).recipient``."""
    out = ""
    node = raw
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            parent = loc[i - 1] if i else None
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            label = node.get(_NAMED.get(str(parent), "")) if isinstance(node, dict) else None
            if isinstance(label, str):
                out += f" ({label})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "<top level>"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
