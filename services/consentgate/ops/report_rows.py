"""The rows of the subject and recipient reports, from records already read. Pure: the
reading is :mod:`consentgate.ops.report`, the rendering :mod:`consentgate.ops.report_format`.

Each builder returns a :class:`~consentgate.ops.report_format.Section` with its rows in a
fixed order (so the JSON is stable): consent changes in the canonical order of the consent
model (effective time, recorded time, change id), grants by (purpose, recipient),
provisions by (date, subject, sink, recipient), retractions by (time, sink, offset),
decisions by sink.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from consentgate.client.messages import Retraction
from consentgate.consent.timeline import Timeline
from consentgate.models.consent import ConsentChange
from consentgate.models.records import DecisionRecord, ProvisionRecord
from consentgate.ops.report_format import Cell, Section, Total

__all__ = [
    "FoundRetraction",
    "LoggedChange",
    "change_section",
    "decision_section",
    "provision_section",
    "recipient_totals",
    "retraction_section",
    "state_section",
    "unique_provisions",
]

_SUBJECT_PROVISION_COLUMNS = (
    "provision_date",
    "recipient_id",
    "sink",
    "subject_key",
    "data_items",
    "consent_change_id",
    "consent_notice_version",
    "consent_method",
    "consent_confirmed_at",
)
_RECIPIENT_PROVISION_COLUMNS = (
    "provision_date",
    "subject_id",
    "subject_key",
    "sink",
    "purpose",
    "data_items",
    "consent_change_id",
    "consent_notice_version",
    "consent_method",
    "consent_confirmed_at",
)
_PROVISION_EXTRA = (
    "subject_id",
    "recipient_id",
    "recipient_name",
    "recipient_address",
    "recipient_country",
    "purpose",
    "provision_id",
    "first_event_id",
    "policy_version",
)

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LoggedChange:
    """A consent change and where it is in consent.changes."""

    change: ConsentChange
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class FoundRetraction:
    """A retraction in a sink, and why it was counted as the subject's."""

    sink: str
    retraction: Retraction
    matched_by: str  # "key" | "change id"


def change_section(changes: Iterable[LoggedChange], title: str) -> Section:
    rows: list[dict[str, Cell]] = []
    for logged in sorted(changes, key=lambda c: (*c.change.order_key, c.partition, c.offset)):
        c = logged.change
        rows.append(
            {
                "effective_time": c.effective_time,
                "recorded_time": c.recorded_time,
                "action": c.action.value,
                "purpose": c.purpose,
                "recipient": c.recipient,
                "method": c.method.value,
                "notice_version": c.notice_version,
                "change_id": c.change_id,
                "expires_at": c.expires_at,
                "actor": c.actor,
                "tcf_string": c.tcf_string,
                "log_partition": logged.partition,
                "log_offset": logged.offset,
            }
        )
    return Section(
        "consent_changes",
        title,
        (
            "effective_time",
            "recorded_time",
            "action",
            "purpose",
            "recipient",
            "method",
            "notice_version",
            "change_id",
        ),
        rows,
        extra=("expires_at", "actor", "tcf_string", "log_partition", "log_offset"),
    )


def state_section(timeline: Timeline | None, now: datetime, title: str) -> Section:
    """One row per grant key of the subject's consent.state record: its status at ``now``.

    ``granted`` (since the interval's start, until its end or open), ``scheduled`` (a grant
    that starts later), or how the last interval ended (``withdrawn``, ``expired``,
    ``erased``; ``since`` is then when it ended and the change is the one that ended it).
    """
    rows: list[dict[str, Cell]] = []
    if timeline is not None:
        by_id = {c.change_id: c for c in timeline.record.changes}
        for purpose, recipient in sorted(timeline.keys(), key=lambda k: (k[0], k[1] or "")):
            intervals = timeline.intervals(purpose, recipient)
            current = timeline.interval_at(purpose, recipient, now)
            later = next((i for i in intervals if i.start > now), None)
            row: dict[str, Cell] = {"purpose": purpose, "recipient": recipient}
            interval = current or later
            if interval is not None:
                evidence = interval.evidence_at(now) if current is not None else interval.grants[0]
                row.update(
                    status="granted" if current is not None else "scheduled",
                    since=interval.start,
                    until=interval.end,
                    change_id=evidence.change_id,
                    notice_version=evidence.notice_version,
                    method=evidence.method.value,
                )
            else:
                last = intervals[-1]
                ender = by_id.get(last.ended_by or "")
                row.update(
                    status=str(last.end_reason) if last.end_reason else "ended",
                    since=last.end,
                    until=None,
                    change_id=last.ended_by,
                    notice_version=ender.notice_version if ender else None,
                    method=ender.method.value if ender else None,
                )
            rows.append(row)
    return Section(
        "current_state",
        title,
        (
            "purpose",
            "recipient",
            "status",
            "since",
            "until",
            "change_id",
            "notice_version",
            "method",
        ),
        rows,
    )


def unique_provisions(records: Iterable[ProvisionRecord]) -> tuple[list[ProvisionRecord], int]:
    """The records with distinct provision ids (the first one of each), and how many
    repeated an id already seen (the id is deterministic: a repeat is the same provision)."""
    seen: dict[str, ProvisionRecord] = {}
    repeats = 0
    for record in records:
        if record.provision_id in seen:
            repeats += 1
        else:
            seen[record.provision_id] = record
    ordered = sorted(
        seen.values(), key=lambda r: (r.provision_date, r.subject_id, r.sink, r.recipient_id)
    )
    return ordered, repeats


def _provision_row(r: ProvisionRecord) -> dict[str, Cell]:
    return {
        "provision_date": r.provision_date,
        "subject_id": r.subject_id,
        "subject_key": r.subject_key,
        "sink": r.sink,
        "purpose": r.purpose,
        "data_items": tuple(r.data_items),
        "consent_change_id": r.consent_change_id,
        "consent_notice_version": r.consent_notice_version,
        "consent_method": r.consent_method,
        "consent_confirmed_at": r.consent_confirmed_at,
        "recipient_id": r.recipient_id,
        "recipient_name": r.recipient_name,
        "recipient_address": r.recipient_address,
        "recipient_country": r.recipient_country,
        "provision_id": r.provision_id,
        "first_event_id": str(r.first_event_id),
        "policy_version": r.policy_version,
    }


def provision_section(records: Iterable[ProvisionRecord], title: str, *, by: str) -> Section:
    """Provision rows for a subject report (``by="subject"``) or a recipient's (``by=
    "recipient"``); ``records`` as :func:`unique_provisions` returns them."""
    columns = _SUBJECT_PROVISION_COLUMNS if by == "subject" else _RECIPIENT_PROVISION_COLUMNS
    return Section(
        "provisions",
        title,
        columns,
        [_provision_row(r) for r in records],
        extra=_PROVISION_EXTRA,
        short=frozenset({"subject_key"}),
    )


def recipient_totals(records: list[ProvisionRecord], repeats: int) -> dict[str, Total]:
    sinks = Counter(r.sink for r in records)
    dates = [r.provision_date for r in records]
    first: date | None = min(dates) if dates else None
    last: date | None = max(dates) if dates else None
    return {
        "provisions": len(records),
        "subjects": len({r.subject_id for r in records}),
        "days": len(set(dates)),
        "first_date": first,
        "last_date": last,
        "provisions_by_sink": dict(sorted(sinks.items())),
        "repeated_provision_ids": repeats,
    }


def retraction_section(found: Iterable[FoundRetraction], title: str) -> Section:
    rows: list[dict[str, Cell]] = []
    for f in sorted(
        found,
        key=lambda f: (f.retraction.timestamp or _NEVER, f.sink, f.retraction.offset),
    ):
        r = f.retraction
        rows.append(
            {
                "time": r.timestamp,
                "sink": f.sink,
                "key": r.key,
                "reason": r.reason,
                "change_id": r.change_id,
                "purpose": r.purpose,
                "matched_by": f.matched_by,
                "policy_version": r.policy_version,
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
            }
        )
    return Section(
        "retractions",
        title,
        ("time", "sink", "key", "reason", "change_id", "purpose"),
        rows,
        extra=("matched_by", "policy_version", "topic", "partition", "offset"),
        short=frozenset({"key"}),
    )


def decision_section(
    records: Iterable[DecisionRecord], title: str
) -> tuple[Section, dict[str, Total]]:
    """Allowed and denied per sink (with the deny reasons), and totals over events."""
    allowed: Counter[str] = Counter()
    denied: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    events: set[str] = set()
    any_allowed: set[str] = set()
    for record in records:
        event = str(record.event_id)
        events.add(event)
        for outcome in record.outcomes:
            sink = outcome.sink
            if outcome.allowed:
                allowed[sink] += 1
                any_allowed.add(event)
            else:
                denied[sink] += 1
                reasons.setdefault(sink, Counter())[outcome.reason] += 1
            t = record.event_time
            first[sink] = min(first.get(sink, t), t)
            last[sink] = max(last.get(sink, t), t)
    rows: list[dict[str, Cell]] = []
    for sink in sorted(set(allowed) | set(denied)):
        why = sorted(reasons.get(sink, Counter()).items(), key=lambda kv: (-kv[1], kv[0]))
        rows.append(
            {
                "sink": sink,
                "allowed": allowed[sink],
                "denied": denied[sink],
                "deny_reasons": ", ".join(f"{reason}={n}" for reason, n in why) or None,
                "first_event": first[sink],
                "last_event": last[sink],
            }
        )
    section = Section(
        "decisions",
        title,
        ("sink", "allowed", "denied", "deny_reasons", "first_event", "last_event"),
        rows,
    )
    totals: dict[str, Total] = {
        "events_decided": len(events),
        "events_allowed_into_a_sink": len(any_allowed),
    }
    return section, totals
