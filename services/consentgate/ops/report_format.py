"""The shape of a report and its three renderings: a terminal table, CSV and JSON.

A report is data first (:class:`Report`: what it is about, sections of rows, totals, which
topic partitions were read, notes), so the three outputs cannot disagree:

- **terminal**: each section as an aligned table; long keys (pseudonyms) abbreviated, lists
  (data items) replaced by ``[n]`` with a legend under the table, times to the second in
  UTC. ``--csv`` and ``--json`` carry every value in full.
- **CSV**: one table with one header row: ``section`` first, then every column of every
  section (in order of first appearance); a row fills its section's columns. Times are ISO
  8601, lists ``;``-joined, missing values empty.
- **JSON**: ``{"report", "format_version", "about", "sections": {name: [rows]}, "totals",
  "read", "notes"}``, keys sorted, every row with every column of its section (null where
  empty), times ISO 8601, lists as arrays. Only ``about.as_of`` (the instant the current
  state is given for: ``--as-of``, default now) depends on when it was made: the same topics
  and the same ``--as-of`` give the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

__all__ = [
    "FORMAT_VERSION",
    "Cell",
    "Report",
    "Section",
    "render_csv",
    "render_json",
    "render_text",
]

FORMAT_VERSION = 1

Cell = str | int | datetime | date | tuple[str, ...] | None
"""A value in a report row."""

Total = Cell | Mapping[str, int]

_SHORT = 12  # characters of an abbreviated key kept in the terminal


@dataclass
class Section:
    """One table of a report: ``columns`` in the terminal, ``columns + extra`` in CSV/JSON."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: list[dict[str, Cell]] = field(default_factory=list)
    extra: tuple[str, ...] = ()
    short: frozenset[str] = frozenset()
    """Columns abbreviated in the terminal (keys, 64 hex digits)."""

    @property
    def all_columns(self) -> tuple[str, ...]:
        return self.columns + tuple(c for c in self.extra if c not in self.columns)


@dataclass
class Report:
    kind: str  # "subject" | "recipient"
    title: str
    about: dict[str, Cell]
    sections: list[Section]
    totals: dict[str, Total] = field(default_factory=dict)
    read: dict[str, list[int]] = field(default_factory=dict)
    """Topic -> the partitions read."""
    notes: list[str] = field(default_factory=list)

    def section(self, name: str) -> Section:
        return next(s for s in self.sections if s.name == name)


# -- terminal --------------------------------------------------------------------------------
def _text_cell(value: Cell, short: bool) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return ", ".join(value)
    text = str(value)
    return text[:_SHORT] + ".." if short and len(text) > _SHORT + 2 else text


def _table(section: Section) -> list[str]:
    legends: dict[str, dict[tuple[str, ...], str]] = {}
    body: list[list[str]] = []
    for row in section.rows:
        line = []
        for col in section.columns:
            value = row.get(col)
            if isinstance(value, tuple):
                labels = legends.setdefault(col, {})
                line.append(labels.setdefault(value, f"[{len(labels) + 1}]"))
            else:
                line.append(_text_cell(value, col in section.short))
        body.append(line)
    head = [c.replace("_", " ") for c in section.columns]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    out = ["  " + "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    out += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip() for b in body
    ]
    for col, labels in legends.items():
        for value, label in labels.items():
            out.append(f"  {label} {col.replace('_', ' ')}: {', '.join(value) or '-'}")
    return out


def _total_text(value: Total) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v:,}" for k, v in value.items()) or "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return _text_cell(value, False)


def render_text(report: Report) -> str:
    """The report for a terminal."""
    lines = [report.title]
    width = max((len(k) for k in report.about), default=0)
    for key, value in report.about.items():
        lines.append(f"  {key.replace('_', ' '):<{width}}  {_text_cell(value, False)}")
    for section in report.sections:
        lines += ["", f"{section.title}: {len(section.rows):,}"]
        lines += _table(section) if section.rows else ["  (none)"]
    if report.totals:
        lines += ["", "Totals"]
        width = max(len(k) for k in report.totals)
        for key, total in report.totals.items():
            lines.append(f"  {key.replace('_', ' '):<{width}}  {_total_text(total)}")
    lines += ["", "Read from Kafka (read_committed)"]
    for topic, parts in report.read.items():
        lines.append(f"  {topic}  partitions {', '.join(str(p) for p in parts) or '-'}")
    if any(section.short & set(section.columns) and section.rows for section in report.sections):
        lines += ["", "Keys are abbreviated here; --csv and --json give them in full."]
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


# -- CSV -------------------------------------------------------------------------------------
def _csv_cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple):
        return ";".join(value)
    return str(value)


def render_csv(report: Report) -> str:
    """One CSV table: a header row, then every row of every section."""
    header: list[str] = ["section"]
    for section in report.sections:
        header += [c for c in section.all_columns if c not in header]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for section in report.sections:
        for row in section.rows:
            writer.writerow([section.name] + [_csv_cell(row.get(c)) for c in header[1:]])
    return buffer.getvalue()


# -- JSON ------------------------------------------------------------------------------------
def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


def render_json(report: Report) -> str:
    """The report as stable JSON (sorted keys, two-space indent, trailing newline)."""
    doc = {
        "report": report.kind,
        "format_version": FORMAT_VERSION,
        "about": {k: _json_value(v) for k, v in report.about.items()},
        "sections": {
            s.name: [{c: _json_value(row.get(c)) for c in s.all_columns} for row in s.rows]
            for s in report.sections
        },
        "totals": {k: _json_value(v) for k, v in report.totals.items()},
        "read": {topic: sorted(parts) for topic, parts in report.read.items()},
        "notes": list(report.notes),
    }
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
