"""What a policy change would do to routing: the same events, decided under both policies.

Pure: the caller supplies the events (source name + decoded record), the subjects'
timelines and ``now``. A sink present in only one policy counts as denying everything in the
other. Only changes of allowed/denied are routing changes; a changed deny reason is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consentgate.consent.timeline import Timeline
from consentgate.policy.decide import decide_all
from consentgate.policy.event import SourceEvent
from consentgate.policy.model import Policy, Sink, Source
from consentgate.policy.reasons import Decision

__all__ = ["RoutingChange", "SinkDiff", "diff_routing"]


@dataclass(frozen=True, slots=True)
class RoutingChange:
    """One event whose routing to one sink differs; None = the sink is absent there."""

    event_id: str | None
    old: Decision | None
    new: Decision | None

    @property
    def now_allowed(self) -> bool:
        return self.new is not None and self.new.allowed


@dataclass(frozen=True, slots=True)
class SinkDiff:
    """Per sink: the events whose routing changes, and what changed in its declaration."""

    sink: str
    changes: tuple[RoutingChange, ...]
    notes: tuple[str, ...]

    @property
    def newly_allowed(self) -> int:
        return sum(1 for c in self.changes if c.now_allowed)

    @property
    def newly_denied(self) -> int:
        return len(self.changes) - self.newly_allowed


def diff_routing(
    old: Policy,
    new: Policy,
    events: Iterable[tuple[str, Mapping[str, Any]]],
    timelines: Mapping[str, Timeline],
    now: datetime,
) -> list[SinkDiff]:
    """Per sink (old policy order, then sinks only in new), the routing changes."""
    known = {k.name for k in old.sinks}
    names = [k.name for k in old.sinks] + [k.name for k in new.sinks if k.name not in known]
    changes: dict[str, list[RoutingChange]] = {name: [] for name in names}
    for source_name, record in events:
        before = _decisions(old, source_name, record, timelines, now)
        after = _decisions(new, source_name, record, timelines, now)
        event_id = _event_id(old, new, source_name, record)
        for name in names:
            was, becomes = before.get(name), after.get(name)
            if _allowed(was) != _allowed(becomes):
                changes[name].append(RoutingChange(event_id, was, becomes))
    return [SinkDiff(name, tuple(changes[name]), _notes(old, new, name)) for name in names]


def _decisions(
    policy: Policy,
    source_name: str,
    record: Mapping[str, Any],
    timelines: Mapping[str, Timeline],
    now: datetime,
) -> dict[str, Decision]:
    source = _source(policy, source_name)
    if source is None:
        return {}
    event = SourceEvent.from_record(source, record)
    timeline = timelines.get(event.subject_id) if event.subject_id else None
    sinks = policy.sinks_for(source_name)
    return {sink.name: d for sink, d in decide_all(event, timeline, sinks, now, policy.defaults)}


def _event_id(old: Policy, new: Policy, source_name: str, record: Mapping[str, Any]) -> str | None:
    for policy in (new, old):
        source = _source(policy, source_name)
        if source is not None:
            return SourceEvent.from_record(source, record).event_id
    return None


def _source(policy: Policy, name: str) -> Source | None:
    return next((s for s in policy.sources if s.name == name), None)


def _allowed(decision: Decision | None) -> bool:
    return decision is not None and decision.allowed


def _notes(old: Policy, new: Policy, name: str) -> tuple[str, ...]:
    was = next((k for k in old.sinks if k.name == name), None)
    becomes = next((k for k in new.sinks if k.name == name), None)
    if was is None:
        return ("added",)
    if becomes is None:
        return ("removed",)
    return tuple(_declaration_changes(was, becomes))


def _declaration_changes(was: Sink, becomes: Sink) -> Iterable[str]:
    added = [f for f in becomes.fields if f not in was.fields]
    dropped = [f for f in was.fields if f not in becomes.fields]
    if added or dropped:
        yield "fields " + " ".join([*(f"+{f}" for f in added), *(f"-{f}" for f in dropped)])
    for attr in ("topic", "source", "purpose", "recipient", "subject_id"):
        a, b = getattr(was, attr), getattr(becomes, attr)
        if a != b:
            yield f"{attr} {a} -> {b}"
    if set(was.extra_purposes) != set(becomes.extra_purposes):
        yield f"extra_purposes {list(was.extra_purposes)} -> {list(becomes.extra_purposes)}"
    if set(was.opt_out_signals) != set(becomes.opt_out_signals):
        yield f"opt_out_signals {list(was.opt_out_signals)} -> {list(becomes.opt_out_signals)}"
