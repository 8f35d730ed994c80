"""What a replay did (or, with ``--dry-run``, would do): per sink, allowed and denied by
reason, and against the live sink: added, unchanged, retracted. A table for people, a dict
for ``--json``. Pure.

Counts are of (event, sink) pairs of this run; a resumed replay counts what it did after
resuming (the part before was counted by the run that committed it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from consentgate.ops.replay_live import Outcome
from consentgate.policy import Decision, Sink

Decisions = tuple[tuple[Sink, Decision], ...]

__all__ = ["ReplayReport", "SinkTally"]


@dataclass
class SinkTally:
    topic: str
    allowed: int = 0
    denied: Counter[str] = field(default_factory=Counter)
    added: int = 0  # written to the sink (versioned: every allowed pair)
    unchanged: int = 0  # allowed and already held by the live sink
    retracted: int = 0  # held by the live sink and denied now
    retraction_keys: int = 0  # null records written (would be written) for them

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "allowed": self.allowed,
            "denied": dict(sorted(self.denied.items())),
            "added": self.added,
            "unchanged": self.unchanged,
            "retracted": self.retracted,
            "retraction_keys": self.retraction_keys,
        }


@dataclass
class ReplayReport:
    replay_id: str
    mode: str  # versioned | live | dry-run
    consent: str
    source: str
    suffix: str | None = None
    events: int = 0
    dead_letters: int = 0
    sinks: dict[str, SinkTally] = field(default_factory=dict)
    resumed: bool = False
    complete_before: bool = False  # the id's committed offsets were already at the end
    withdrawn_while_running: int = 0  # retractions for changes that arrived during the run
    late_retractions: int = 0  # live: held records found denied only in the writing pass
    topics_created: list[str] = field(default_factory=list)
    # decisions tuples counted, expanded per sink and reason only when read: a verdict the
    # router core answers from memory is the same tuple object for every event it answers
    _counted: dict[int, tuple[Decisions, int]] = field(default_factory=dict, repr=False)
    _selected: Collection[str] | None = field(default=None, repr=False)
    seconds: float = 0.0  # the whole run: consent loading, live sinks read, passes
    pass_seconds: float = 0.0  # the pass that judged (and wrote) the range

    def tally(self, sink: str, topic: str) -> SinkTally:
        found = self.sinks.get(sink)
        if found is None:
            found = self.sinks[sink] = SinkTally(topic)
        return found

    def count(self, decisions: Decisions, selected: Collection[str]) -> None:
        """Every selected sink's outcome of one event (allowed, or denied by reason)."""
        self._selected = selected
        held = self._counted.get(id(decisions))
        self._counted[id(decisions)] = (decisions, 1 if held is None else held[1] + 1)
        if len(self._counted) >= 65_536:
            self._expand()

    def _expand(self) -> None:
        selected = self._selected or ()
        for decisions, n in self._counted.values():
            for sink, decision in decisions:
                if sink.name not in selected:
                    continue
                t = self.tally(sink.name, sink.topic)
                if decision.allowed:
                    t.allowed += n
                else:
                    t.denied[str(decision.reason)] += n
        self._counted.clear()

    def outcome(self, sink: str, topic: str, outcome: Outcome) -> None:
        """What the replay did (would do) with one (event, sink) against the live sink."""
        t = self.tally(sink, topic)
        if outcome == "add":
            t.added += 1
        elif outcome == "unchanged":
            t.unchanged += 1
        elif outcome == "retract":
            t.retracted += 1

    @property
    def rate(self) -> float:
        """Records per second of the judging pass."""
        return self.events / self.pass_seconds if self.pass_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        self._expand()
        return {
            "replay_id": self.replay_id,
            "mode": self.mode,
            "consent": self.consent,
            "source": self.source,
            "suffix": self.suffix,
            "events": self.events,
            "dead_letters": self.dead_letters,
            "resumed": self.resumed,
            "complete_before": self.complete_before,
            "withdrawn_while_running": self.withdrawn_while_running,
            "late_retractions": self.late_retractions,
            "topics_created": self.topics_created,
            "seconds": round(self.seconds, 3),
            "pass_seconds": round(self.pass_seconds, 3),
            "records_per_second": round(self.rate, 1),
            "sinks": {name: t.to_json() for name, t in sorted(self.sinks.items())},
        }

    def render(self) -> str:
        self._expand()
        live = self.mode != "versioned"
        head = (
            f"replay {self.replay_id} ({self.mode}, consent {self.consent}) of {self.source}: "
            f"{self.events:,} records in {self.seconds:.1f} s ({self.rate:,.0f}/s judging), "
            f"{self.dead_letters:,} dead letters"
        )
        lines = [head]
        if self.suffix:
            lines.append(f"  into *.{self.suffix}")
        if self.resumed:
            lines.append("  resumed from committed offsets (counts cover this run)")
        if self.complete_before:
            lines.append("  already complete: nothing left to replay for this id")
        verbs = (
            ("would add", "unchanged", "would retract")
            if self.mode == "dry-run"
            else ("added", "unchanged", "retracted")
        )
        cols = f"  {'sink':<36} {'allowed':>9} {'denied':>9}"
        if live:
            cols += f" {verbs[0]:>10} {verbs[1]:>10} {verbs[2]:>13} {'keys':>6}"
        lines.append(cols)
        for name, t in sorted(self.sinks.items()):
            row = f"  {name:<36} {t.allowed:>9,} {sum(t.denied.values()):>9,}"
            if live:
                row += f" {t.added:>10,} {t.unchanged:>10,} {t.retracted:>13,}"
                row += f" {t.retraction_keys:>6,}"
            lines.append(row)
            for reason, n in sorted(t.denied.items()):
                lines.append(f"      {reason:<32} {n:>9,}")
        if self.withdrawn_while_running:
            lines.append(
                f"  retractions for withdrawals during the run: {self.withdrawn_while_running}"
            )
        if self.late_retractions:
            lines.append(
                f"  WARNING: {self.late_retractions} live records were found denied only in "
                "the writing pass (consent changed meanwhile); records held under their keys "
                "before them are retracted too: replay the range again to re-deliver them"
            )
        return "\n".join(lines)
