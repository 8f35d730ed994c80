"""Make the cluster's ACLs match the ``access`` declaration, idempotently, with a diff.

Only the principals the declaration governs are touched (its named principals, and every
principal matching the partner template, so a recipient removed from the policy loses its
access on the next apply); ACLs of anyone else are left alone. For a governed principal,
a binding the declaration does not ask for (a DENY, another host, another operation) is
deleted: what the file says is all that principal may do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka.admin import (  # type: ignore[attr-defined]  # admin re-exports implicitly
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from consentgate.errors import ClusterError
from consentgate.ops.access_spec import AccessSpec, Binding

__all__ = ["AclReport", "apply_acls", "current_acls"]

_TIMEOUT = 30.0


@dataclass
class AclReport:
    """What an apply added and removed (or, dry, would have)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    dry_run: bool = False

    def lines(self) -> list[str]:
        verb = "would " if self.dry_run else ""
        out = [f"+ {line}" for line in self.added] + [f"- {line}" for line in self.removed]
        summary = f"{verb}add {len(self.added)}, {verb}remove {len(self.removed)}"
        return [*out, f"{summary}, unchanged {self.unchanged}"]


def _name(value: Any) -> str:
    """An enum member's name (the stubs also allow str and int for these fields)."""
    return str(getattr(value, "name", value))


def _ours(acl: Any) -> Binding | None:
    """The binding an ACL is, when it is one the declaration could ask for."""
    if acl.permission_type != AclPermissionType.ALLOW or acl.host != "*":
        return None
    kind, op, pattern = (
        _name(acl.restype),
        _name(acl.operation),
        _name(acl.resource_pattern_type),
    )
    if (
        kind not in ("TOPIC", "GROUP", "TRANSACTIONAL_ID")
        or op not in ("READ", "WRITE")
        or pattern not in ("LITERAL", "PREFIXED")
    ):
        return None
    return Binding(str(acl.principal), kind, str(acl.name), pattern, op)  # type: ignore[arg-type]


def _acl(binding: Binding) -> AclBinding:
    return AclBinding(
        ResourceType[binding.resource_type],
        binding.name,
        ResourcePatternType[binding.pattern],
        binding.principal,
        "*",
        AclOperation[binding.operation],
        AclPermissionType.ALLOW,
    )


def _describe(acl: Any) -> str:
    ours = _ours(acl)
    if ours is not None:
        return str(ours)
    return (
        f"{acl.principal} {_name(acl.permission_type)} {_name(acl.operation)} "
        f"{_name(acl.restype).lower()} {acl.name} ({_name(acl.resource_pattern_type)}, host "
        f"{acl.host})"
    )


def current_acls(admin: Any) -> list[AclBinding]:
    """Every ACL on the cluster (the authorizer must be enabled)."""
    anything: tuple[Any, ...] = (
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    everything = AclBindingFilter(*anything)
    try:
        found: list[AclBinding] = admin.describe_acls(everything, request_timeout=_TIMEOUT).result(
            timeout=_TIMEOUT
        )
    except Exception as exc:
        raise ClusterError(
            f"cannot list the cluster's ACLs ({exc}); is an authorizer configured, and may "
            "this principal describe ACLs (cluster DESCRIBE)?"
        ) from exc
    return found


def apply_acls(admin: Any, access: AccessSpec, *, dry_run: bool = False) -> AclReport:
    """Add the missing bindings, remove the governed principals' others; the report."""
    existing = [acl for acl in current_acls(admin) if access.governs(acl.principal)]
    have = {b for acl in existing if (b := _ours(acl)) is not None}
    stray = [acl for acl in existing if _ours(acl) not in access.bindings]
    missing = sorted(access.bindings - have)
    report = AclReport(
        added=[str(b) for b in missing],
        removed=sorted(_describe(acl) for acl in stray),
        unchanged=len(access.bindings & have),
        dry_run=dry_run,
    )
    if dry_run:
        return report
    if missing:
        results = admin.create_acls([_acl(b) for b in missing], request_timeout=_TIMEOUT)
        for binding, future in results.items():
            try:
                future.result(timeout=_TIMEOUT)
            except Exception as exc:
                raise ClusterError(f"cannot create ACL {binding}: {exc}") from exc
    if stray:
        filters = [
            AclBindingFilter(
                acl.restype,
                acl.name,
                acl.resource_pattern_type,
                acl.principal,
                acl.host,
                acl.operation,
                acl.permission_type,
            )
            for acl in stray
        ]
        for flt, future in admin.delete_acls(filters, request_timeout=_TIMEOUT).items():
            try:
                future.result(timeout=_TIMEOUT)
            except Exception as exc:
                raise ClusterError(f"cannot delete ACL {flt}: {exc}") from exc
    return report
