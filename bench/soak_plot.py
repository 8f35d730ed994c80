"""Inline SVG line charts and the self-contained HTML page of bench/soak.py.

No dependencies and nothing fetched: ``line_chart`` draws one or more series over a shared
time axis as an ``<svg>`` element (a NaN breaks a line), ``page`` wraps the run's facts, its
summary and the charts in one HTML document that opens from disk.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Series", "line_chart", "page"]

WIDTH, HEIGHT = 760, 250
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 30, 40
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


@dataclass(frozen=True)
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: steps of 1, 2, 2.5 or 5 times a power of ten."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(lo / step) * step
    ticks = [first]
    while ticks[-1] < hi - step * 1e-9:
        ticks.append(ticks[-1] + step)
    return ticks


def label(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.0f}" if value == int(value) else f"{value:g}"


def _segments(series: Series) -> list[list[tuple[float, float]]]:
    """The series' points, split where a value is missing (NaN)."""
    out: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(series.xs, series.ys, strict=True):
        if math.isfinite(y):
            out[-1].append((x, y))
        elif out[-1]:
            out.append([])
    return [s for s in out if s]


def line_chart(
    title: str, unit: str, series: Sequence[Series], *, from_zero: bool = True, mark: float = -1
) -> str:
    """One chart, x in minutes from 0 to the last point; the y axis starts at 0 unless
    ``from_zero`` is False; ``mark`` >= 0 draws a dashed vertical line (the warm-up's end)."""
    x_hi = max([x for s in series for x in s.xs] or [1.0]) or 1.0
    ys = [y for s in series for y in s.ys if math.isfinite(y)] or [0.0]
    x_ticks = [t for t in nice_ticks(0.0, x_hi) if t <= x_hi * (1 + 1e-9)]
    y_ticks = nice_ticks(min(0.0, *ys) if from_zero else min(ys), max(ys))
    y_lo, y_hi = y_ticks[0], y_ticks[-1]
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + inner_w * x / x_hi

    def py(y: float) -> float:
        return TOP + inner_h * (1 - (y - y_lo) / ((y_hi - y_lo) or 1.0))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold">'
        f"{html.escape(title)} ({html.escape(unit)})</text>",
    ]
    for t in y_ticks:
        y = py(t)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label(t)}</text>'
        )
    for t in x_ticks:
        x = px(t)
        parts.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + inner_h}" stroke="#eee"/>'
            f'<text x="{x:.1f}" y="{TOP + inner_h + 16}" text-anchor="middle">{label(t)}</text>'
        )
    parts.append(
        f'<text x="{LEFT + inner_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">minutes</text>'
        f'<rect x="{LEFT}" y="{TOP}" width="{inner_w}" height="{inner_h}" fill="none" '
        'stroke="#888"/>'
    )
    if mark >= 0:
        parts.append(
            f'<line x1="{px(mark):.1f}" y1="{TOP}" x2="{px(mark):.1f}" y2="{TOP + inner_h}" '
            'stroke="#999" stroke-dasharray="4 3"/>'
            f'<text x="{px(mark) + 4:.1f}" y="{TOP + 12}" fill="#666">warm-up end</text>'
        )
    for i, s in enumerate(series):
        color = COLORS[i % len(COLORS)]
        for seg in _segments(s):
            points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in seg)
            parts.append(
                f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.6"/>'
            )
        lx = WIDTH - RIGHT - 150 * (len(series) - i)
        parts.append(
            f'<rect x="{lx}" y="9" width="12" height="3" fill="{color}"/>'
            f'<text x="{lx + 16}" y="14">{html.escape(s.label)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def page(
    title: str, headline: str, facts: list[str], summary: list[tuple[str, str]], charts: list[str]
) -> str:
    """A whole HTML document: the headline, facts as a list, the summary table, the charts."""
    rows = "\n".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in summary
    )
    items = "\n".join(f"<li>{html.escape(f)}</li>" for f in facts)
    figures = "\n".join(f"<div>{c}</div>" for c in charts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 800px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td {{ border: 1px solid #ccc; padding: 3px 8px; }}
div {{ margin: 1em 0; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p><strong>{html.escape(headline)}</strong></p>
<ul>
{items}
</ul>
<table>
{rows}
</table>
{figures}
</body></html>
"""
