"""Cross-reference checks of a policy whose entries are each well-formed.

Errors (the policy is refused): duplicate names or topics, a sink naming an undeclared
source, purpose or recipient, a sink writing to a source topic, a field its source's schema
lacks, the raw subject field listed as a field (it would bypass pseudonymization), an opt-out
signal its source cannot raise, ``keep_if_named_recipient`` without a recipient; in the
``tcf`` mapping, an undeclared purpose or recipient, a TCF purpose id outside 1..11 (or listed
twice), a vendor id outside 1..65535, two recipients mapped to one vendor id.
Warnings (the policy is accepted, the operator should know): sinks that cannot be retracted
per subject, raw ids or personal fields going to a partner, partner sinks ignoring the
opt-out signals their source carries, schemas not available to check fields against.

Each finding starts with the path of the entry, e.g. ``sinks[3] (partner.acme.scores).recipient``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from consentgate.policy.model import Policy, Sink, Source, SubjectHandling, TcfMapping
from consentgate.policy.project import RESERVED_FIELDS

__all__ = ["Findings", "SchemaFields", "validate"]

SchemaFields = Mapping[str, Mapping[str, bool]]
"""Schema full name -> top-level field name -> whether the field is marked ``"pii": true``."""


@dataclass
class Findings:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def validate(policy: Policy, schemas: SchemaFields | None) -> Findings:
    """Every cross-reference problem of ``policy`` (``schemas`` None: fields not checked)."""
    found = Findings()
    _unique(found, "recipients", [r.id for r in policy.recipients], "id")
    _unique(found, "sources", [s.name for s in policy.sources], "name")
    _unique(found, "sources", [s.topic for s in policy.sources], "topic")
    _unique(found, "sinks", [k.name for k in policy.sinks], "name")
    _unique(found, "sinks", [k.topic for k in policy.sinks], "topic")
    for i, source in enumerate(policy.sources):
        _check_source(found, f"sources[{i}] ({source.name})", source, schemas)
    for i, sink in enumerate(policy.sinks):
        _check_sink(found, f"sinks[{i}] ({sink.name})", sink, policy, schemas)
    if policy.tcf is not None:
        _check_tcf(found, "tcf", policy.tcf, policy)
    return found


def _unique(found: Findings, kind: str, values: list[str], attr: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            found.errors.append(f"{kind}[{i}].{attr}: duplicate {attr} {value!r}")
        seen.add(value)


def _check_source(found: Findings, at: str, source: Source, schemas: SchemaFields | None) -> None:
    if schemas is None:
        return
    fields = schemas.get(source.schema_name)
    if fields is None:
        found.warnings.append(f"{at}.schema: schema {source.schema_name!r} not found")
        return
    for attr in ("subject_field", "event_time_field", "event_id_field"):
        name = getattr(source, attr)
        if name not in fields:
            found.errors.append(f"{at}.{attr}: {source.schema_name} has no field {name!r}")
    for signal, name in source.signal_fields.items():
        if name not in fields:
            found.errors.append(
                f"{at}.signal_fields.{signal}: {source.schema_name} has no field {name!r}"
            )


def _check_sink(
    found: Findings, at: str, sink: Sink, policy: Policy, schemas: SchemaFields | None
) -> None:
    err = found.errors.append
    if sink.topic in {s.topic for s in policy.sources}:
        err(f"{at}.topic: {sink.topic!r} is a source topic")
    for j, purpose in enumerate((sink.purpose, *sink.extra_purposes)):
        path = "purpose" if j == 0 else f"extra_purposes[{j - 1}]"
        if purpose not in policy.purposes:
            err(f"{at}.{path}: purpose {purpose!r} is not declared under purposes")
    if len(set(sink.extra_purposes)) != len(sink.extra_purposes):
        err(f"{at}.extra_purposes: listed twice")
    recipients = {r.id for r in policy.recipients}
    if sink.recipient is not None and sink.recipient not in recipients:
        err(f"{at}.recipient: {sink.recipient!r} is not a declared recipient")
    if sink.subject_id is SubjectHandling.KEEP_IF_NAMED_RECIPIENT and sink.recipient is None:
        err(f"{at}.subject_id: keep_if_named_recipient needs a recipient (a partner sink)")
    if sink.recipient is None and any(
        s.purpose == sink.purpose and s.recipient is not None for s in policy.sinks
    ):
        err(
            f"{at}.recipient: missing; purpose {sink.purpose!r} is a partner purpose (other "
            "sinks give it to a named recipient): a partner sink must name its recipient, or "
            "a first-party grant of that purpose would release data to a third party"
        )
    source = next((s for s in policy.sources if s.name == sink.source), None)
    if source is None:
        err(f"{at}.source: {sink.source!r} is not a declared source")
        return
    _check_fields(found, at, sink, source)
    _warn_sink(found, at, sink, source, schemas)


def _check_fields(found: Findings, at: str, sink: Sink, source: Source) -> None:
    err = found.errors.append
    if len(set(sink.fields)) != len(sink.fields):
        err(f"{at}.fields: a field is listed twice")
    for j, name in enumerate(sink.fields):
        if name in RESERVED_FIELDS:
            err(f"{at}.fields[{j}]: {name!r} is reserved for what the router adds")
        elif name == source.subject_field:
            err(f"{at}.fields[{j}]: the raw subject id is not a field; use subject_id handling")
    for j, signal in enumerate(sink.opt_out_signals):
        if signal not in source.signal_fields:
            err(f"{at}.opt_out_signals[{j}]: source {source.name} raises no signal {signal!r}")


_TCF_PURPOSES = range(1, 12)
"""The purpose ids of IAB TCF v2.2 (1 store and/or access information on a device .. 11)."""
_TCF_VENDORS = range(1, 65536)
"""Global Vendor List ids: 16 bits in a TC string, 0 is not a vendor."""


def _check_tcf(found: Findings, at: str, tcf: TcfMapping, policy: Policy) -> None:
    err = found.errors.append
    for purpose, ids in tcf.purposes.items():
        if purpose not in policy.purposes:
            err(f"{at}.purposes.{purpose}: purpose {purpose!r} is not declared under purposes")
        for j, tcf_id in enumerate(ids):
            if tcf_id not in _TCF_PURPOSES:
                err(f"{at}.purposes.{purpose}[{j}]: TCF purpose {tcf_id} is not within 1..11")
        if len(set(ids)) != len(ids):
            err(f"{at}.purposes.{purpose}: a TCF purpose is listed twice")
    recipients = {r.id for r in policy.recipients}
    owner: dict[int, str] = {}
    for recipient, vendor in tcf.vendors.items():
        if recipient not in recipients:
            err(f"{at}.vendors.{recipient}: {recipient!r} is not a declared recipient")
        if vendor not in _TCF_VENDORS:
            err(f"{at}.vendors.{recipient}: vendor id {vendor} is not within 1..65535")
        elif vendor in owner:
            err(f"{at}.vendors.{recipient}: vendor id {vendor} is also mapped to {owner[vendor]}")
        else:
            owner[vendor] = recipient


def _warn_sink(
    found: Findings, at: str, sink: Sink, source: Source, schemas: SchemaFields | None
) -> None:
    warn = found.warnings.append
    if not sink.retractable:
        warn(f"{at}: subject_id drop: not retractable per subject (withdrawal stops new data only)")
    if sink.is_partner and sink.subject_id is SubjectHandling.KEEP_IF_NAMED_RECIPIENT:
        warn(f"{at}: raw subject ids go to {sink.recipient} (identifiable provision)")
    if sink.is_partner and source.signal_fields and not sink.opt_out_signals:
        warn(f"{at}: partner sink honours none of {sorted(source.signal_fields)}")
    fields = None if schemas is None else schemas.get(source.schema_name)
    if fields is None:
        return
    for j, name in enumerate(sink.fields):
        if name not in fields:
            found.errors.append(f"{at}.fields[{j}]: {source.schema_name} has no field {name!r}")
    personal = [name for name in sink.fields if fields.get(name)]
    if sink.is_partner and personal:
        warn(f"{at}: personal fields go to {sink.recipient}: {', '.join(personal)}")
