"""The audit's HTML report: self-contained, well-formed, escaped, accessible (no broker)."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from consentgate.ops.audit_html import FINDING_KINDS, render_html
from consentgate.ops.svg import (
    BACKGROUND,
    OTHER,
    PALETTE,
    TEXT,
    Series,
    contrast_ratio,
    nice_ceiling,
    stacked,
)

pytestmark = pytest.mark.unit

HOSTILE = "<img src=x onerror=alert(1)>"
BUCKETS = [f"2026-12-02T{h:02d}:00:00Z" for h in range(24)]


def sample_report(
    verdict: str = "PASS", *, sinks: int = 80, recipients: int = 60
) -> dict[str, Any]:
    topics = [f"partner.client-{n:02d}.browsing.v1" for n in range(sinks)]
    counts = {t: [(n + 1) * (h % 5 + 1) for h in range(len(BUCKETS))] for n, t in enumerate(topics)}
    findings: dict[str, Any] = {kind: {"count": 0, "examples": []} for kind, _ in FINDING_KINDS}
    if verdict == "FAIL":
        for n, (kind, _) in enumerate(FINDING_KINDS):
            findings[kind] = {
                "count": 1001 + n,
                "examples": [
                    {
                        "where": f"events.browsing.raw.v1[{n % 6}]@{n}",
                        "sink": topics[0],
                        "event_id": f"ev-{n}",
                        "subject": f"S{n}",
                        "detail": f"detail of {kind}",
                    }
                ],
            }
        findings["brand_new_kind"] = {"count": 7, "examples": []}
    return {
        "verdict": verdict,
        "started_at": "2026-12-02T19:00:00Z",
        "took_s": 12.34,
        "cluster": "127.0.0.1:19192",
        "read": {
            "consent_changes": 245279,
            "subjects": 74878,
            "raw_records": 82000,
            "decisions": 81990,
            "dead_letters": 10,
            "provisions": 5000,
            "sink_records": 300000,
            "retractions": 40,
            "policies": 2,
        },
        "sinks": [
            {
                "topic": t,
                "name": f"client-{n:02d}-browsing",
                "purpose": "partner_sharing",
                "recipient": f"client-{n:02d}" if n else None,
                "records": sum(counts[t]),
                "retractions": n % 3,
                "in_flight": 0,
                "policy_versions": ["abc123def456"],
                "declared": n != 5,
            }
            for n, t in enumerate(topics)
        ],
        "findings": findings,
        "series": {
            "records_per_sink": {"buckets": BUCKETS, "bucket_seconds": 3600, "sinks": counts},
            "denials_by_reason": {"withdrawn": 120, "not_granted_at_event_time": 45, "erased": 0},
            "provisions_per_recipient": {f"client-{n:02d}": 10 * n for n in range(recipients)},
        },
        "notes": ["retention window: raw records from 2026-10-28"],
    }


def parse(doc: str) -> ET.Element:
    # strict XML: well-formed, every element closed; the input is our own output (and expat
    # expands no external entities), so the XML-attack rule does not apply
    return ET.fromstring(doc)  # noqa: S314


def text_of(element: ET.Element) -> str:
    return " ".join("".join(element.itertext()).split())


def table_after(root: ET.Element, svg_id: str) -> ET.Element:
    """The data table in the <details> that follows the figure holding ``svg_id``."""
    children = list(root.iter())
    figure = next(
        el for el in children if el.tag == "figure" and el.find(f"svg[@id='{svg_id}']") is not None
    )
    siblings = next(el for el in root.iter() if figure in list(el))
    following = list(siblings)[list(siblings).index(figure) + 1]
    assert following.tag == "details"
    table = following.find("table")
    assert table is not None
    return table


def rows(table: ET.Element) -> list[list[str]]:
    body = table.find("tbody")
    assert body is not None
    return [[text_of(cell) for cell in tr] for tr in body.findall("tr")]


@pytest.mark.parametrize("verdict", ["PASS", "FAIL"])
def test_renders_well_formed_self_contained_document(verdict: str) -> None:
    doc = render_html(sample_report(verdict))
    root = parse(doc)
    assert root.tag == "html"
    assert root.get("lang") == "en"
    assert "<script" not in doc.lower()
    assert "http://" not in doc
    assert "https://" not in doc
    assert "url(" not in doc
    assert "@import" not in doc
    for element in root.iter():
        assert element.tag not in {"script", "img", "iframe", "link", "object", "embed"}
        assert "src" not in element.attrib
        assert not any(name.startswith("on") for name in element.attrib)
        href = element.get("href")
        assert href is None or href.startswith("#")
    csp = root.find("head/meta[@http-equiv='Content-Security-Policy']")
    assert csp is not None
    assert "default-src 'none'" in (csp.get("content") or "")


def test_verdict_is_stated_in_words() -> None:
    passed = parse(render_html(sample_report("PASS"))).find(".//p[@id='verdict']")
    failed = parse(render_html(sample_report("FAIL"))).find(".//p[@id='verdict']")
    assert passed is not None
    assert failed is not None
    assert text_of(passed) == "\u2714 Verdict: PASS \u2014 no findings"
    total = sum(1001 + n for n in range(len(FINDING_KINDS))) + 7
    assert text_of(failed) == f"\u2718 Verdict: FAIL \u2014 {total:,} findings of 13 kinds"
    assert "pass" in (passed.get("class") or "")
    assert "fail" in (failed.get("class") or "")


def test_hostile_strings_are_escaped_everywhere() -> None:
    report = sample_report("FAIL", sinks=3, recipients=2)
    report["findings"]["leak"]["examples"][0]["detail"] = HOSTILE
    report["findings"][HOSTILE] = {"count": 1, "examples": [{"subject": HOSTILE}]}
    report["sinks"][0]["topic"] = HOSTILE
    report["sinks"][1]["recipient"] = '"><script>alert(1)</script>'
    report["series"]["records_per_sink"]["sinks"][HOSTILE] = [1] * len(BUCKETS)
    report["series"]["denials_by_reason"][HOSTILE] = 3
    report["series"]["provisions_per_recipient"][HOSTILE] = 4
    report["notes"].append(HOSTILE)
    report["cluster"] = HOSTILE
    doc = render_html(report)
    assert "<img" not in doc
    assert "<script" not in doc
    root = parse(doc)
    assert not any(el.tag in {"img", "script"} for el in root.iter())
    # the text survives, as text, in the findings table, charts, sinks, notes and header
    assert "".join(root.itertext()).count(HOSTILE) >= 8
    leak = next(el for el in root.iter("td") if el.get("class") == "detail")
    assert leak.text == HOSTILE


def test_each_finding_kind_shows_its_count_in_order() -> None:
    root = parse(render_html(sample_report("FAIL")))
    summary = next(t for t in root.iter("table") if text_of(t).startswith("Findings per kind"))
    got = [(kind, count) for _, kind, count in rows(summary)]
    expected = [(kind, f"{1001 + n:,}") for n, (kind, _) in enumerate(FINDING_KINDS)]
    assert got == [*expected, ("brand_new_kind", "7")]  # unknown kinds after the known
    headings = [text_of(h) for h in root.iter("h3")]
    for n, (_, title) in enumerate(FINDING_KINDS):
        assert f"{title} ({1001 + n:,})" in headings
    examples = [t for t in root.iter("table") if "example" in text_of(t.find("caption"))]  # type: ignore[arg-type]
    assert len(examples) == len(FINDING_KINDS)  # the unknown kind has none: said in words
    assert "No examples were recorded." in [text_of(p) for p in root.iter("p")]


def test_zero_counts_and_pass_list_every_kind() -> None:
    root = parse(render_html(sample_report("PASS")))
    summary = next(t for t in root.iter("table") if text_of(t).startswith("Findings per kind"))
    assert [count for _, _, count in rows(summary)] == ["0"] * len(FINDING_KINDS)
    charts = ["Sink records per time bucket", "Denials by reason", "Provisions per recipient"]
    assert [text_of(h) for h in root.iter("h3")] == charts  # no finding sections


def test_every_chart_has_title_desc_caption_and_data_table() -> None:
    root = parse(render_html(sample_report("PASS")))
    svgs = list(root.iter("svg"))
    assert [s.get("id") for s in svgs] == ["chart-records", "chart-denials", "chart-provisions"]
    for svg in svgs:
        assert svg.get("role") == "img"
        title, desc = svg.find("title"), svg.find("desc")
        assert title is not None
        assert desc is not None
        assert title.text
        assert desc.text
        assert (svg.get("aria-labelledby") or "").split() == [title.get("id"), desc.get("id")]
        figure = next(f for f in root.iter("figure") if svg in list(f))
        caption = figure.find("figcaption")
        assert caption is not None
        assert caption.text
        assert rows(table_after(root, svg.get("id") or ""))


def test_records_chart_shows_top_ten_sinks_and_other() -> None:
    report = sample_report("PASS")
    root = parse(render_html(report))
    table = table_after(root, "chart-records")
    head = [text_of(th) for th in table.iter("th") if th.get("scope") == "col"]
    ranked = [f"partner.client-{n:02d}.browsing.v1" for n in range(79, 69, -1)]
    assert head == ["Bucket start", *ranked, "other (70 sinks)", "Total"]
    data = rows(table)
    assert len(data) == len(BUCKETS)
    series = report["series"]["records_per_sink"]["sinks"]
    for h, row in enumerate(data):
        other = sum(series[f"partner.client-{n:02d}.browsing.v1"][h] for n in range(70))
        assert row[0] == BUCKETS[h]
        assert row[-2] == f"{other:,}"
        assert row[-1] == f"{sum(v[h] for v in series.values()):,}"
    legend = [text_of(t) for t in root.find(".//svg[@id='chart-records']").iter("text")]  # type: ignore[union-attr]
    assert "other (70 sinks)" in legend


def test_provisions_chart_shows_top_forty_and_other() -> None:
    root = parse(render_html(sample_report("PASS", recipients=60)))
    data = rows(table_after(root, "chart-provisions"))
    assert len(data) == 41
    assert data[0] == ["client-59", "590"]
    assert data[-1] == ["other (20 more)", f"{sum(10 * n for n in range(20)):,}"]
    denials = rows(table_after(root, "chart-denials"))
    assert denials == [["withdrawn", "120"], ["not_granted_at_event_time", "45"], ["erased", "0"]]


EMPTY_SERIES = {
    "records_per_sink": {"buckets": [], "bucket_seconds": 3600, "sinks": {}},
    "denials_by_reason": {},
    "provisions_per_recipient": {},
}


@pytest.mark.parametrize(
    "report",
    [
        {},
        {"verdict": "PASS", "findings": {}, "sinks": [], "notes": [], "series": EMPTY_SERIES},
        {"series": {"records_per_sink": {"buckets": BUCKETS[:2], "sinks": {"a": [0, 0]}}}},
        {"series": {"records_per_sink": {"buckets": [], "sinks": {"a": [4, 5]}}}},
    ],
)
def test_empty_report_and_series_render(report: dict[str, Any]) -> None:
    root = parse(render_html(report))
    svgs = list(root.iter("svg"))
    assert len(svgs) == 3
    for svg in svgs:
        assert "No data" in text_of(svg)
    for table in root.iter("table"):
        assert rows(table)  # a "None." row, never an empty tbody
    notes = root.find(".//section[@aria-labelledby='notes']/p")
    assert notes is not None
    assert notes.text == "No notes."


def test_ragged_series_are_padded_to_the_buckets() -> None:
    series = {"records_per_sink": {"buckets": BUCKETS[:3], "sinks": {"a": [5], "b": [1, 2, 3, 9]}}}
    root = parse(render_html({"series": series}))
    got = [r[1:] for r in rows(table_after(root, "chart-records"))]
    assert got == [["1", "5", "6"], ["2", "0", "2"], ["3", "0", "3"]]  # b first: larger


def test_headings_in_order_and_table_headers_scoped() -> None:
    root = parse(render_html(sample_report("FAIL")))
    levels = [int(el.tag[1]) for el in root.iter() if re.fullmatch(r"h[1-6]", el.tag)]
    assert levels[0] == 1
    assert levels.count(1) == 1
    assert all(b - a <= 1 for a, b in itertools.pairwise(levels))
    ths = list(root.iter("th"))
    assert ths
    assert all(th.get("scope") in {"col", "row"} for th in ths)
    assert all(t.find("caption") is not None for t in root.iter("table"))


def test_colours_meet_contrast() -> None:
    doc = render_html(sample_report("FAIL"))
    style = doc[doc.index("<style>") : doc.index("</style>")]
    text_colours = {TEXT, *re.findall(r"(?<!-)color: (#[0-9a-f]{6})", style)}
    for colour in text_colours - {"#ffffff"}:
        assert contrast_ratio(colour, BACKGROUND) >= 4.5, colour
    for badge in re.findall(r"\.verdict\.\w+ \{ background: (#[0-9a-f]{6})", style):
        assert contrast_ratio("#ffffff", badge) >= 4.5, badge
    for colour in (*PALETTE, OTHER):
        assert contrast_ratio(colour, BACKGROUND) >= 3.0, colour  # non-text (WCAG 1.4.11)
    assert len(re.findall(r"\.verdict\.\w+ \{ background", style)) == 2


def test_svg_helpers() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 11, 200, 201)] == [1, 1, 5, 10, 20, 200, 500]
    for top, ticks in ((2, ["0", "1", "2"]), (47, ["0", "10", "20", "30", "40", "50"])):
        svg = stacked("x", "t", "d", ["a"], [Series("s", [top], PALETTE[0])])
        assert re.findall(r'text-anchor="end">([\d,]+)<', svg) == ticks  # whole-number ticks
    with pytest.raises(ValueError, match="one value per label"):
        stacked("x", "t", "d", ["a", "b"], [Series("s", [1], PALETTE[0])])
