"""Inline SVG charts for the audit's HTML report, drawn as strings in Python.

The report must open from a file on an auditor's laptop, offline, with nothing to trust but
the file: no JavaScript, no chart library, nothing fetched. So the two chart shapes it needs
(stacked bars over time, labelled horizontal bars) are drawn here. Every chart is an image
(``role="img"``) named by its ``<title>`` and ``<desc>``; every string is escaped, and the
output is well-formed XML so a test can parse it. Colours come from a palette whose entries
keep >= 3:1 against the white background (WCAG 1.4.11, non-text contrast) and text >= 4.5:1;
colour never carries meaning alone (a legend names each series, bars carry their values).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BACKGROUND", "OTHER", "PALETTE", "TEXT", "Series", "contrast_ratio", "hbars", "stacked"]

BACKGROUND = "#ffffff"
TEXT = "#1a1a1a"
GRID = "#767676"
PALETTE = (
    "#1f77b4",
    "#d55e00",
    "#117733",
    "#882255",
    "#b8860b",
    "#332288",
    "#c2185b",
    "#00838f",
    "#8c564b",
    "#6a3d9a",
)
OTHER = "#767676"  # the "other" series
WIDTH = 800


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int]
    colour: str


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def contrast_ratio(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two ``#rrggbb`` colours (1 to 21)."""

    def luminance(colour: str) -> float:
        rgb = [int(colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 x 10^k at or above ``value`` (at least 1)."""
    step = 1
    while True:
        for mult in (1, 2, 5):
            if step * mult >= value:
                return step * mult
        step *= 10


def _label(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _frame(chart_id: str, height: int, title: str, desc: str, body: list[str]) -> str:
    return (
        f'<svg id="{esc(chart_id)}" role="img" aria-labelledby="{esc(chart_id)}-t '
        f'{esc(chart_id)}-d" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" font-size="12" fill="{TEXT}">'
        f'<title id="{esc(chart_id)}-t">{esc(title)}</title>'
        f'<desc id="{esc(chart_id)}-d">{esc(desc)}</desc>'
        f'<rect width="{WIDTH}" height="{height}" fill="{BACKGROUND}"/>' + "".join(body) + "</svg>"
    )


def _empty(chart_id: str, title: str, desc: str) -> str:
    text = f'<text x="{WIDTH // 2}" y="40" text-anchor="middle">No data</text>'
    return _frame(chart_id, 70, title, desc, [text])


def stacked(
    chart_id: str, title: str, desc: str, labels: Sequence[str], series: Sequence[Series]
) -> str:
    """Stacked vertical bars, one per label (time bucket), series bottom-up in legend order."""
    if any(len(s.values) != len(labels) for s in series):
        raise ValueError("every series needs one value per label")
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    if not labels or not series or max(totals) <= 0:
        return _empty(chart_id, title, desc)
    left, top, plot_w, plot_h = 70, 16, WIDTH - 120, 240
    top_value = nice_ceiling(max(totals))
    body = []
    leading = int(str(top_value)[0])  # 1, 2 or 5: ticks at whole fifths or quarters
    steps = min(top_value, 4 if leading == 2 else 5)
    for tick in range(steps + 1):
        value = top_value * tick // steps
        y = top + plot_h - plot_h * tick / steps
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID}" stroke-width="0.5"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:,}</text>'
        )
    slot = plot_w / len(labels)
    bar_w = slot * 0.8 if slot >= 4 else slot
    for i, label in enumerate(labels):
        x, base = left + i * slot + (slot - bar_w) / 2, float(top + plot_h)
        for s in series:
            if s.values[i] <= 0:
                continue
            h = plot_h * s.values[i] / top_value
            base -= h
            body.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{s.colour}" stroke="{BACKGROUND}" stroke-width="0.5">'
                f"<title>{esc(s.name)}, {esc(label)}: {s.values[i]:,}</title></rect>"
            )
    shown = sorted({round(k * (len(labels) - 1) / 5) for k in range(6)})
    for i in shown:
        x = left + i * slot + slot / 2
        body.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
            f"{esc(labels[i])}</text>"
        )
    legend_top = top + plot_h + 36
    for n, s in enumerate(series):
        x, y = 10 + (n % 3) * 265, legend_top + (n // 3) * 20
        body.append(
            f'<rect x="{x}" y="{y}" width="12" height="12" fill="{s.colour}"/>'
            f'<text x="{x + 18}" y="{y + 10}">{esc(_label(s.name, 38))}</text>'
        )
    height = legend_top + ((len(series) + 2) // 3) * 20 + 6
    return _frame(chart_id, height, title, desc, body)


def hbars(chart_id: str, title: str, desc: str, items: Sequence[tuple[str, int]]) -> str:
    """Horizontal bars, one per (label, value), in the given order, each with its value."""
    if not items or max(v for _, v in items) <= 0:
        return _empty(chart_id, title, desc)
    label_w, row, top = 270, 22, 8
    bar_max = WIDTH - label_w - 90
    top_value = max(v for _, v in items)
    body = []
    for n, (label, value) in enumerate(items):
        y = top + n * row
        w = bar_max * value / top_value
        body.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">'
            f"<title>{esc(label)}</title>{esc(_label(label, 40))}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" '
            f'fill="{PALETTE[0]}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{value:,}</text>'
        )
    return _frame(chart_id, top * 2 + row * len(items), title, desc, body)
