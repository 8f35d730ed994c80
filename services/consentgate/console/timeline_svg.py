"""A subject's consent timeline as inline SVG: one row per (purpose, recipient), one bar per
grant interval, drawn server-side (no JavaScript).

The chart is an image (``role="img"``) named by its ``<title>`` and ``<desc>``; each bar has
its own ``<title>`` (start, end, how it ended). Colour never carries meaning alone: a legend
names both fills (open, ended), each bar's title says which it is, and the page lists the
same intervals as a table. Only presentation attributes are
used (the console's Content-Security-Policy allows no inline styles).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from consentgate.consent.timeline import Timeline
from consentgate.ops.svg import GRID, TEXT, esc

__all__ = ["IntervalRow", "interval_rows", "timeline_svg"]

WIDTH = 860
LABEL = 260
ROW = 30
TOP = 34
OPEN_FILL = "#117733"  # >= 3:1 against white
ENDED_FILL = "#767676"


@dataclass(frozen=True, slots=True)
class IntervalRow:
    purpose: str
    recipient: str | None
    start: datetime
    end: datetime | None
    end_reason: str | None
    granted_by: str
    ended_by: str | None


def interval_rows(timeline: Timeline | None) -> list[IntervalRow]:
    if timeline is None:
        return []
    rows = []
    for purpose, recipient in sorted(timeline.keys(), key=lambda k: (k[0], k[1] or "")):
        for i in timeline.intervals(purpose, recipient):
            rows.append(
                IntervalRow(
                    purpose,
                    recipient,
                    i.start,
                    i.end,
                    None if i.end_reason is None else str(i.end_reason),
                    i.grants[0].change_id,
                    i.ended_by,
                )
            )
    return rows


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%SZ")


def timeline_svg(rows: list[IntervalRow], now: datetime, subject: str) -> str:
    """The chart of ``rows`` up to ``now`` ('' when there is nothing to draw)."""
    if not rows:
        return ""
    keys = list(dict.fromkeys((r.purpose, r.recipient) for r in rows))
    t0 = min(r.start for r in rows)
    t1 = max([now, *(r.end for r in rows if r.end is not None)])
    span = max((t1 - t0).total_seconds(), 1.0)
    plot = WIDTH - LABEL - 20
    height = TOP + ROW * len(keys) + 30

    def x(t: datetime) -> float:
        return LABEL + plot * (t - t0).total_seconds() / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="tl-title tl-desc" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" font-family="sans-serif" font-size="13">',
        f'<title id="tl-title">Consent timeline of {esc(subject)}</title>',
        f'<desc id="tl-desc">{len(rows)} grant intervals over {len(keys)} purposes and '
        f"recipients, from {_when(t0)} to {_when(t1)}; the table below lists them.</desc>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{LABEL}" y="20" fill="{TEXT}">{_when(t0)}</text>',
        f'<text x="{WIDTH - 20}" y="20" fill="{TEXT}" text-anchor="end">{_when(t1)}</text>',
    ]
    for n, (purpose, recipient) in enumerate(keys):
        y = TOP + n * ROW
        label = f"{purpose} / {recipient or 'first party'}"
        parts.append(f'<text x="4" y="{y + 19}" fill="{TEXT}">{esc(label)}</text>')
        parts.append(
            f'<line x1="{LABEL}" y1="{y + ROW - 2}" x2="{WIDTH - 20}" y2="{y + ROW - 2}" '
            f'stroke="{GRID}" stroke-width="0.5"/>'
        )
        for r in rows:
            if (r.purpose, r.recipient) != (purpose, recipient):
                continue
            end = r.end or now
            left, right = x(r.start), x(max(end, r.start))
            how = "open" if r.end is None else f"ended {_when(r.end)} ({r.end_reason or 'ended'})"
            fill = OPEN_FILL if r.end is None else ENDED_FILL
            parts.append(
                f"<g><title>{esc(label)}: from {_when(r.start)}, {esc(how)}</title>"
                f'<rect x="{left:.1f}" y="{y + 6}" width="{max(right - left, 2):.1f}" '
                f'height="{ROW - 12}" fill="{fill}"/></g>'
            )
    legend_y = TOP + ROW * len(keys) + 20
    parts += [
        f'<rect x="{LABEL}" y="{legend_y - 11}" width="14" height="12" fill="{OPEN_FILL}"/>',
        f'<text x="{LABEL + 20}" y="{legend_y}" fill="{TEXT}">granted, still open</text>',
        f'<rect x="{LABEL + 180}" y="{legend_y - 11}" width="14" height="12" fill="{ENDED_FILL}"/>',
        f'<text x="{LABEL + 200}" y="{legend_y}" fill="{TEXT}">granted, then ended</text>',
        "</svg>",
    ]
    return "".join(parts)
