"""The records an allowed or decided event becomes: their values, and their bytes, fast.

Every record has a plain value (a dict of the schema's fields), which the serde encodes as a
whole: that is the reference, used by ``Router.plan_uncached`` and as the fallback. The fast
path writes the same bytes from parts (see :mod:`consentgate.router.avro`):

- a sink record is ``header + projected fields + subject_key + purpose + recipient +
  evidence``; the projected fields of one event are written once per field list (every
  partner sink of the case lists the same five), purpose and recipient once per sink, the
  evidence's consent part once per grant and its event part once per event;
- a decision record is ``header + head + outcomes``; each distinct outcome is written once,
  and a cached verdict keeps its whole outcomes array.
Each sink's first record, and the first records of the other schemas, are checked against
the serde's encoding of the value; any difference turns the fast path off (logged).

Partner records (a sink with a recipient) carry only identifiers scoped to that recipient,
so that two recipients holding the same event cannot join on it: the event id in the
evidence, in the ``event_id`` field (if listed), in the ``cg-event-id`` header and in the key
of a sink that drops subject ids is :meth:`PseudonymKeys.scoped_event_id` for the recipient
(one HMAC per event and recipient, kept in :class:`EventParts`), the evidence's source
partition and offset are null and the ``cg-source`` header is not written. So a partner
sink's field block and evidence tail are written per recipient; first-party records, the
decision and the provision keep the real event id and coordinates (internal topics).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consentgate.consent.intervals import Evidence
from consentgate.policy import Decision, Policy, PseudonymKeys, Sink, SourceEvent, project
from consentgate.router.avro import (
    Encoder,
    FastRecord,
    Unsupported,
    compile_schema,
    long_bytes,
    split_header,
)
from consentgate.serde import Serde

__all__ = [
    "DecisionRecords",
    "EventParts",
    "PseudonymMemo",
    "SinkRecords",
    "decision_value",
    "outcome",
    "partner_tail",
    "provision_value",
    "sink_event_id",
    "sink_value",
]

log = logging.getLogger(__name__)

_TAIL = ("subject_key", "purpose", "recipient", "evidence")
_GRANT = ("consent_change_id", "consent_notice_version", "consent_method")
_TAIL_FIELDS = frozenset(
    {"policy_version", "source_topic", "source_partition", "source_offset", "event_id",
     "decided_at"}
)  # fmt: skip
_MEMORY = 65_536  # distinct outcomes / grants whose bytes are kept


class EventParts:
    """What the records of one event share: its coordinates, and bytes written once.

    ``id_field``: the field holding the event id (the source's ``event_id_field``); a
    partner sink that lists it gets the recipient-scoped id there."""

    __slots__ = (
        "blocks", "encoded", "event", "event_id", "fields", "id_field", "now", "scoped", "tail",
    )  # fmt: skip

    def __init__(
        self, event: SourceEvent, event_id: Any, *, topic: str, partition: int, offset: int,
        now: datetime, id_field: str = "event_id",
    ) -> None:  # fmt: skip
        self.event, self.event_id, self.now, self.id_field = event, event_id, now, id_field
        self.tail: dict[str, Any] = {
            "source_topic": topic,
            "source_partition": partition,
            "source_offset": offset,
            "event_id": event_id,
            "decided_at": now,
        }
        self.fields: dict[str, bytes] = {}  # projected field -> its bytes
        # a sink's field list -> its bytes, and (if it lists the id field) the bytes before
        # and after that field, for partner sinks, which write their scoped id there
        self.blocks: dict[tuple[str, ...], tuple[bytes, tuple[bytes, bytes] | None]] = {}
        # (sink schema, recipient or None) -> the evidence's event part
        self.encoded: dict[tuple[str, str | None], bytes] = {}
        self.scoped: dict[str, uuid.UUID] = {}  # recipient -> the event's scoped id

    def scoped_id(self, keys: PseudonymKeys, recipient: str) -> uuid.UUID:
        """The event's id in ``recipient``'s records (one HMAC per event and recipient)."""
        scoped = self.scoped.get(recipient)
        if scoped is None:
            scoped = self.scoped[recipient] = keys.scoped_event_id(recipient, self.event_id)
        return scoped


def partner_tail(tail: Mapping[str, Any], scoped: uuid.UUID) -> dict[str, Any]:
    """The evidence's event part on a partner record, from the event's ``tail``: the scoped
    event id, no source partition or offset (the source topic is a public name)."""
    return {**tail, "source_partition": None, "source_offset": None, "event_id": scoped}


def sink_event_id(sink: Sink, event_id: str | uuid.UUID, keys: PseudonymKeys) -> str:
    """The event id ``sink``'s records carry for the event ``event_id`` (``cg-event-id``,
    ``evidence.event_id``, the key of a sink that drops subject ids): the recipient-scoped
    id on partner sinks, the event id itself on first-party sinks. For tools that look an
    event up in a sink (replay, audit)."""
    if sink.recipient is None:
        return str(event_id)
    return str(keys.scoped_event_id(sink.recipient, event_id))


def sink_value(
    parts: EventParts, sink: Sink, evidence: Evidence, keys: PseudonymKeys, policy_version: str
) -> dict[str, Any]:
    """The sink record's value: the projection plus the evidence (on partner sinks with the
    recipient-scoped event id, computed here from ``keys``, and no source coordinates)."""
    value = project(parts.event, sink, evidence, keys)
    tail = parts.tail
    if sink.recipient is not None:
        scoped = keys.scoped_event_id(sink.recipient, parts.event_id)
        tail = partner_tail(tail, scoped)
        if parts.id_field in value:
            value[parts.id_field] = scoped
    value["evidence"] = {
        "consent_change_id": evidence.change_id,
        "consent_notice_version": evidence.notice_version,
        "consent_method": str(evidence.method),
        "policy_version": policy_version,
        **tail,
    }
    return value


def provision_value(
    policy: Policy,
    pid: str,
    parts: EventParts,
    *,
    sink: Sink,
    evidence: Evidence,
    subject_key: str | None,
) -> dict[str, Any]:
    """The ProvisionRecord model's dict (every value is already valid: policy, validated
    event, consent record), encoded without a model round trip."""
    if sink.recipient is None or parts.event.subject_id is None:
        raise ValueError("a provision needs a partner sink and a subject")
    recipient = policy.recipient(sink.recipient)
    first = parts.event_id
    return {
        "provision_id": pid,
        "provision_date": parts.now.date(),
        "recipient_id": recipient.id,
        "recipient_name": recipient.name,
        "recipient_address": recipient.address,
        "recipient_country": recipient.country,
        "subject_id": parts.event.subject_id,
        "subject_key": subject_key,
        "sink": sink.name,
        "purpose": sink.purpose,
        "data_items": list(sink.fields),
        "consent_change_id": evidence.change_id,
        "consent_notice_version": evidence.notice_version,
        "consent_method": str(evidence.method),
        "consent_confirmed_at": parts.now,
        "first_event_id": first if isinstance(first, uuid.UUID) else uuid.UUID(str(first)),
        "policy_version": policy.version,
    }


def decision_value(
    parts: EventParts,
    policy_version: str,
    consent_version: int | None,
    decisions: Sequence[tuple[Sink, Decision]] | None,
) -> dict[str, Any]:
    """The DecisionRecord's value (without ``outcomes`` when ``decisions`` is None)."""
    event, tail = parts.event, parts.tail
    record: dict[str, Any] = {
        "event_id": parts.event_id,
        "source_topic": tail["source_topic"],
        "source_partition": tail["source_partition"],
        "source_offset": tail["source_offset"],
        "subject_id": event.subject_id,
        "event_time": event.event_time,
        "decided_at": parts.now,
        "policy_version": policy_version,
        "consent_version": consent_version,
    }
    if decisions is not None:
        record["outcomes"] = [outcome(sink, d) for sink, d in decisions]
    return record


def outcome(sink: Sink, decision: Decision) -> dict[str, Any]:
    return {
        "sink": sink.name,
        "allowed": decision.allowed,
        "reason": str(decision.reason),
        "evidence_change_id": decision.change_id,
    }


@dataclass(frozen=True)
class _Layout:
    """How a sink schema's fields are written: projected fields, then the four below."""

    projected: dict[str, Encoder]
    subject_key: Encoder
    purpose: Encoder
    recipient: Encoder
    grant: tuple[Encoder, ...]  # consent_change_id, consent_notice_version, consent_method
    tail: tuple[tuple[str, Encoder], ...]  # the evidence's event part, in schema order


def _layout(parsed: Mapping[str, Any]) -> _Layout | None:  # noqa: PLR0911 - one per shape check
    """The layout of a sink schema, or None if it has not the shape the splice assumes."""
    named = parsed.get("__named_schemas", {})
    fields = parsed["fields"]
    if tuple(f["name"] for f in fields[-4:]) != _TAIL:
        return None
    projected = {f["name"]: compile_schema(f["type"], named) for f in fields[:-4]}
    key, purpose, recipient = (compile_schema(f["type"], named) for f in fields[-4:-1])
    evidence = fields[-1]["type"]
    evidence = named.get(evidence) if isinstance(evidence, str) else evidence
    if key is None or purpose is None or recipient is None or not isinstance(evidence, dict):
        return None
    ev_fields = evidence.get("fields", [])
    if tuple(f["name"] for f in ev_fields[:3]) != _GRANT:
        return None
    if {f["name"] for f in ev_fields[3:]} != _TAIL_FIELDS:
        return None
    writers = {f["name"]: compile_schema(f["type"], named) for f in ev_fields}
    fields_ok = {name: w for name, w in projected.items() if w is not None}
    evidence_ok = {name: w for name, w in writers.items() if w is not None}
    if len(fields_ok) != len(projected) or len(evidence_ok) != len(writers):
        return None
    try:  # an unlisted field is written as the null branch of its union, one byte
        if any(w(None) != b"\x00" for w in fields_ok.values()):
            return None
    except Unsupported:
        return None
    return _Layout(
        fields_ok,
        key,
        purpose,
        recipient,
        tuple(evidence_ok[name] for name in _GRANT),
        tuple((f["name"], evidence_ok[f["name"]]) for f in ev_fields[3:]),
    )


class SinkRecords:
    """Sink record bytes of one sink schema, spliced from parts (see the module docstring)."""

    def __init__(
        self, serde: Serde, schema_name: str, sinks: Sequence[Sink], policy_version: str
    ) -> None:
        self.serde, self.schema_name = serde, schema_name
        self.policy_version = policy_version
        self.header: bytes | None = None
        self._checked: set[str] = set()
        self._grants: dict[Evidence, bytes] = {}
        self._sinks: dict[str, bytes] = {}  # sink name -> its purpose + recipient bytes
        layout = self.layout = _layout(serde.repository.current(schema_name).parsed)
        self.on = layout is not None
        for sink in sinks:
            if layout is None or not set(sink.fields) <= set(layout.projected):
                continue  # written whole: the serde says what is wrong
            try:
                const = layout.purpose(sink.purpose) + layout.recipient(sink.recipient)
            except Unsupported:
                continue
            self._sinks[sink.name] = const

    def encode(
        self,
        parts: EventParts,
        sink: Sink,
        evidence: Evidence,
        keys: PseudonymKeys,
        subject_key: str | None,
        *,
        middle: bytes | None = None,
        scoped: uuid.UUID | None = None,
    ) -> bytes:
        """The bytes of ``sink``'s record of the event (``subject_key`` as project gives it;
        ``middle``: what :meth:`middle` gave for the same sink, evidence and key, if kept;
        ``scoped``: the event's scoped id for a partner sink, if the caller has it)."""
        layout, body = self.layout, None
        if middle is None:
            middle = self.middle(sink, evidence, subject_key)
        recipient = sink.recipient
        if recipient is not None and scoped is None:
            scoped = parts.scoped_id(keys, recipient)
        if middle is not None and layout is not None and self.on:
            try:
                body = (
                    self._block(layout, parts, sink.fields, scoped)
                    + middle
                    + self._tail_bytes(layout, parts, recipient, scoped)
                )
            except Unsupported:
                body = None
            if body is not None and self.header is not None and sink.name in self._checked:
                return self.header + body
        whole = self.serde.encode(
            sink_value(parts, sink, evidence, keys, self.policy_version), self.schema_name
        )
        if body is not None and self.on:
            header = split_header(whole, body, self.header)
            if header is None:
                log.warning("%s: spliced encoding differs from the serde's, off", sink.name)
                self.on = False
            else:
                self.header = header
                self._checked.add(sink.name)
        return whole

    def middle(self, sink: Sink, evidence: Evidence, subject_key: str | None) -> bytes | None:
        """The part of ``sink``'s records that depends on the grant and the subject key alone
        (subject_key, purpose, recipient, the evidence's consent part); None: written whole."""
        layout = self.layout
        const = self._sinks.get(sink.name) if self.on else None
        if const is None or layout is None:
            return None
        try:
            return layout.subject_key(subject_key) + const + self._grant_bytes(layout, evidence)
        except Unsupported:
            return None

    @staticmethod
    def _block(
        layout: _Layout, parts: EventParts, names: tuple[str, ...], scoped: uuid.UUID | None
    ) -> bytes:
        """The projected fields' bytes (``scoped``: a partner's id in the id field)."""
        block = parts.blocks.get(names)
        if block is None:
            listed, done, values = set(names), parts.fields, parts.event.fields
            out, cut = [], -1
            for name, write in layout.projected.items():
                if name not in listed:
                    out.append(b"\x00")
                    continue
                if name == parts.id_field:
                    cut = len(out)
                data = done.get(name)
                if data is None:
                    data = done[name] = write(values.get(name))
                out.append(data)
            around = (b"".join(out[:cut]), b"".join(out[cut + 1 :])) if cut >= 0 else None
            block = parts.blocks[names] = (b"".join(out), around)
        whole, around = block
        if scoped is None or around is None:
            return whole
        return around[0] + layout.projected[parts.id_field](scoped) + around[1]

    def _grant_bytes(self, layout: _Layout, evidence: Evidence) -> bytes:
        data = self._grants.get(evidence)
        if data is None:
            values = (evidence.change_id, evidence.notice_version, str(evidence.method))
            data = b"".join([w(v) for w, v in zip(layout.grant, values, strict=True)])
            if len(self._grants) >= _MEMORY:
                self._grants.clear()
            self._grants[evidence] = data
        return data

    def _tail_bytes(
        self, layout: _Layout, parts: EventParts, recipient: str | None, scoped: uuid.UUID | None
    ) -> bytes:
        """The evidence's event part (a partner's: :func:`partner_tail` of ``scoped``)."""
        data = parts.encoded.get((self.schema_name, recipient))
        if data is None:
            tail = parts.tail if scoped is None else partner_tail(parts.tail, scoped)
            values = {**tail, "policy_version": self.policy_version}
            data = b"".join([w(values[n]) for n, w in layout.tail])
            parts.encoded[self.schema_name, recipient] = data
        return data


class DecisionRecords:
    """DecisionRecord bytes: ``header + head + outcomes`` (see the module docstring)."""

    def __init__(self, serde: Serde, schema_name: str) -> None:
        self.serde, self.schema_name = serde, schema_name
        self.whole = FastRecord(serde, schema_name)
        parsed = self.whole.parsed
        named = parsed.get("__named_schemas", {})
        fields = parsed["fields"]
        self._head: list[tuple[str, Encoder]] = []
        self._item: Encoder | None = None
        self._items: dict[tuple[str, bool, str, str | None], bytes] = {}
        array = fields[-1]["type"] if fields[-1]["name"] == "outcomes" else None
        if isinstance(array, dict) and array.get("type") == "array":
            self._item = compile_schema(array["items"], named)
        for f in fields[:-1]:
            write = compile_schema(f["type"], named)
            if write is None:
                self._item = None
            else:
                self._head.append((f["name"], write))

    def outcomes(self, decisions: Sequence[tuple[Sink, Decision]]) -> bytes | None:
        """The encoded ``outcomes`` array (None: not writable fast)."""
        item, cache = self._item, self._items
        if item is None or not self.whole.trusted:
            return None
        if not decisions:
            return b"\x00"
        parts = [long_bytes(len(decisions))]
        for sink, d in decisions:
            key = (sink.name, d.allowed, d.reason, d.change_id)
            data = cache.get(key)
            if data is None:
                data = item(outcome(sink, d))
                if len(cache) >= _MEMORY:
                    cache.clear()
                cache[key] = data
            parts.append(data)
        parts.append(b"\x00")
        return b"".join(parts)

    def encode(
        self,
        head: dict[str, Any],
        decisions: Sequence[tuple[Sink, Decision]],
        outcomes: bytes | None,
    ) -> bytes:
        """The record of ``head`` (decision_value without outcomes) and ``decisions``, whose
        ``outcomes`` bytes the caller may have kept (from :meth:`outcomes`)."""
        if outcomes is not None and self.whole.trusted and self.whole.header is not None:
            try:
                body = b"".join([w(head[n]) for n, w in self._head])
            except Unsupported:
                pass
            else:
                return self.whole.header + body + outcomes
        return self.whole.encode({**head, "outcomes": [outcome(s, d) for s, d in decisions]})


class PseudonymMemo(PseudonymKeys):
    """The pseudonyms of ``keys``, remembered per (key name, subject): HMAC once per subject
    and recipient rather than once per record. Bounded (cleared when full). Scoped event ids
    are not remembered here (an event id does not repeat): :class:`EventParts` keeps an
    event's for the records of that event."""

    def __init__(self, keys: PseudonymKeys, size: int = 65_536) -> None:
        super().__init__()
        self._keys = keys
        self._size = size
        self._known: dict[tuple[str, str], str] = {}

    def key_for(self, key_name: str) -> bytes:
        return self._keys.key_for(key_name)

    def pseudonym(self, key_name: str, subject_id: str) -> str:
        known = self._known.get((key_name, subject_id))
        if known is None:
            known = self._keys.pseudonym(key_name, subject_id)
            if len(self._known) >= self._size:
                self._known.clear()
            self._known[(key_name, subject_id)] = known
        return known

    def scoped_event_id(self, key_name: str, event_id: str | uuid.UUID) -> uuid.UUID:
        return self._keys.scoped_event_id(key_name, event_id)

    def __repr__(self) -> str:
        return f"PseudonymMemo({self._keys!r})"
