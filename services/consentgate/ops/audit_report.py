"""The audit's findings and its report: counts and examples per kind, a table, JSON.

The JSON is the report's one form of record; the human table and the HTML file
(:mod:`consentgate.ops.audit_html`) are both drawn from it. A kind with zero findings is
still listed, so a reader sees what was checked, not only what failed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from consentgate.ops.audit_html import FINDING_KINDS

__all__ = ["EXAMPLES", "AuditReport", "SinkStats"]

EXAMPLES = 20
"""Examples kept per finding kind (every finding is counted)."""


@dataclass
class SinkStats:
    topic: str
    name: str
    purpose: str
    recipient: str | None
    declared: bool
    records: int = 0
    retractions: int = 0
    in_flight: int = 0
    policy_versions: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "name": self.name,
            "purpose": self.purpose,
            "recipient": self.recipient,
            "records": self.records,
            "retractions": self.retractions,
            "in_flight": self.in_flight,
            "policy_versions": sorted(self.policy_versions),
            "declared": self.declared,
        }


@dataclass
class AuditReport:
    """What the audit read and found. ``ok`` only when no finding of any kind was made."""

    cluster: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    took_s: float = 0.0
    read: Counter[str] = field(default_factory=Counter)
    sinks: dict[str, SinkStats] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)
    per_bucket: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    bucket_seconds: int = 3600
    denials: Counter[str] = field(default_factory=Counter)
    provisions_per_recipient: Counter[str] = field(default_factory=Counter)

    def find(
        self,
        kind: str,
        *,
        where: str = "",
        sink: str = "",
        event_id: str = "",
        subject: str = "",
        detail: str = "",
    ) -> None:
        self.counts[kind] += 1
        examples = self.examples[kind]
        if len(examples) < EXAMPLES:
            examples.append(
                {
                    "where": where,
                    "sink": sink,
                    "event_id": event_id,
                    "subject": subject,
                    "detail": detail,
                }
            )

    def merge(self, other: AuditReport) -> None:
        """Add ``other``'s findings, sink statistics and series (a share of the sinks)."""
        self.counts.update(other.counts)
        for kind, examples in other.examples.items():
            mine = self.examples[kind]
            mine.extend(examples[: max(0, EXAMPLES - len(mine))])
        self.read.update(other.read)
        self.sinks.update(other.sinks)
        for topic, buckets in other.per_bucket.items():
            self.per_bucket[topic].update(buckets)
        self.notes.extend(other.notes)

    @property
    def ok(self) -> bool:
        return not any(self.counts.values())

    @property
    def verdict(self) -> str:
        return "PASS" if self.ok else "FAIL"

    @property
    def leaks(self) -> int:
        return self.counts["leak"]

    def kinds(self) -> list[str]:
        known = [k for k, _ in FINDING_KINDS]
        return known + sorted(k for k in self.counts if k not in known)

    def to_json(self) -> dict[str, Any]:
        buckets = sorted({b for c in self.per_bucket.values() for b in c})
        labels = [
            datetime.fromtimestamp(b * self.bucket_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            for b in buckets
        ]
        return {
            "verdict": self.verdict,
            "started_at": self.started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "took_s": round(self.took_s, 3),
            "cluster": self.cluster,
            "read": dict(self.read),
            "sinks": [self.sinks[t].to_json() for t in sorted(self.sinks)],
            "findings": {
                k: {"count": self.counts[k], "examples": list(self.examples.get(k, []))}
                for k in self.kinds()
            },
            "series": {
                "records_per_sink": {
                    "buckets": labels,
                    "bucket_seconds": self.bucket_seconds,
                    "sinks": {
                        topic: [self.per_bucket[topic][b] for b in buckets]
                        for topic in sorted(self.per_bucket)
                    },
                },
                "denials_by_reason": dict(self.denials.most_common()),
                "provisions_per_recipient": dict(self.provisions_per_recipient.most_common()),
            },
            "notes": list(self.notes),
        }

    def render(self) -> str:
        """The report as a plain-text table for a terminal."""
        titles = dict(FINDING_KINDS)
        r = self.read
        lines = [
            "consentgate audit (independent re-check: its own rule, consent.changes, raw topics)",
            f"  consent changes {r['consent_changes']:>12,}  subjects {r['subjects']:,}",
            f"  raw records     {r['raw_records']:>12,}  decisions {r['decisions']:,}"
            f"  dead letters {r['dead_letters']:,}  provisions {r['provisions']:,}",
            "",
            f"  {'sink topic':<44} {'records':>9} {'retractions':>12} {'in flight':>10}",
        ]
        for topic in sorted(self.sinks):
            s = self.sinks[topic]
            mark = "" if s.declared else "  (past policy)"
            lines.append(
                f"  {topic:<44} {s.records:>9,} {s.retractions:>12,} {s.in_flight:>10,}{mark}"
            )
        lines += ["", f"  {'finding':<52} {'count':>8}"]
        for kind in self.kinds():
            lines.append(f"  {titles.get(kind, kind):<52} {self.counts[kind]:>8,}")
            for e in self.examples.get(kind, [])[:5]:
                where = " ".join(x for x in (e["sink"], e["where"], e["subject"]) if x)
                lines.append(f"      {where}: {e['detail']}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"  took {self.took_s:.1f} s")
        found = sum(self.counts.values())
        lines.append(
            "RESULT: PASS, zero leaks, every record judged and every input accounted for"
            if self.ok
            else f"RESULT: FAIL, {found:,} findings ({self.leaks:,} leaks)"
        )
        return "\n".join(lines)
