"""The audit's report as one self-contained HTML file, from the audit's JSON report.

An audit is evidence: the file is handed to people who were not at the terminal (a data
protection officer, a regulator), opened offline, perhaps years later. So it is one file with
inline CSS and inline SVG (``consentgate.ops.svg``), no JavaScript and no reference to any
network address; a Content-Security-Policy forbids scripts and fetches even if a string
slipped through. Every string from the report (topic names, subjects, finding details) is
escaped: a finding's detail can quote attacker-controlled event content.

The verdict is stated in words, not only colour; every chart has a caption, an SVG title and
description, and its numbers in a table under ``<details>``. The document is well-formed XML
(every element closed, only XML's own entities) so tests can parse it strictly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from consentgate.ops.svg import OTHER, PALETTE, TEXT, Series, esc, hbars, stacked

__all__ = ["FINDING_KINDS", "render_html"]

FINDING_KINDS: tuple[tuple[str, str], ...] = (
    ("leak", "Leaks (records the rule denies)"),
    ("unjudgeable", "Cannot judge (evidence expired)"),
    ("no_evidence", "Records without evidence"),
    ("evidence_mismatch", "Evidence that does not match the raw event"),
    ("decision_mismatch", "Sink records that contradict their decision"),
    ("delivery_without_provision", "Deliveries without a provision"),
    ("provision_without_delivery", "Provisions without a delivery"),
    ("after_retraction", "Records after their subject's retraction"),
    ("missing_retraction", "Missing retractions"),
    ("duplicate", "Duplicates"),
    ("unaccounted", "Raw records with no outcome"),
    ("incomplete_decision", "Decisions missing a sink"),
)

_READ = (
    ("consent_changes", "Consent changes"),
    ("subjects", "Subjects"),
    ("raw_records", "Raw records"),
    ("decisions", "Decision records"),
    ("dead_letters", "Dead letters"),
    ("provisions", "Provision records"),
    ("sink_records", "Sink records"),
    ("retractions", "Retractions"),
    ("policies", "Policy versions"),
)

_EXAMPLE_COLUMNS = (
    ("where", "Where"),
    ("sink", "Sink"),
    ("event_id", "Event id"),
    ("subject", "Subject"),
    ("detail", "Detail"),
)

_DETAIL = ' class="detail"'
TOP_SINKS = 10
TOP_RECIPIENTS = 40

_CSS = f"""
:root {{ color-scheme: light; }}
body {{ font: 15px/1.45 system-ui, sans-serif; color: {TEXT}; background: #ffffff;
  margin: 0 auto; max-width: 70rem; padding: 1rem 1.5rem 3rem; }}
h2 {{ border-bottom: 2px solid #d0d0d0; margin-top: 2.2rem; }}
.verdict {{ display: inline-block; font-size: 1.4rem; padding: .4rem 1rem; color: #ffffff; }}
.verdict.pass {{ background: #1e6b34; }}
.verdict.fail {{ background: #a4161a; }}
table {{ border-collapse: collapse; margin: .6rem 0; }}
th, td {{ border: 1px solid #bdbdbd; padding: .25rem .55rem; text-align: left; }}
thead th {{ background: #eeeeee; }}
caption {{ text-align: left; font-weight: 600; }}
.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.detail {{ max-width: 32rem; overflow-wrap: anywhere; }}
.zero {{ color: #4d4d4d; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: .1rem 1rem; }}
dt {{ font-weight: 600; }}
dd {{ margin: 0; }}
figcaption {{ font-style: italic; }}
a {{ color: #0b4f8a; }}
"""
# defence in depth: even a string that escaped escaping could neither run nor fetch anything
_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _map(parent: Any, key: str) -> Mapping[str, Any]:
    value = parent.get(key) if isinstance(parent, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _list(parent: Any, key: str) -> list[Any]:
    value = parent.get(key) if isinstance(parent, Mapping) else None
    return value if isinstance(value, list) else []


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'s' * (count != 1)}"


def _table(caption: str, headers: Sequence[str], rows: Sequence[str]) -> str:
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = "".join(rows) or f'<tr><td colspan="{len(headers)}">None.</td></tr>'
    return (
        f"<table><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _row(label: str, values: Sequence[str], numeric: Sequence[bool] | None = None) -> str:
    """A row headed by ``label``; ``values`` are already escaped (numeric: all by default)."""
    flags = numeric if numeric is not None else [True] * len(values)
    tds = "".join(
        f'<td class="num">{v}</td>' if num else f"<td>{v}</td>"
        for v, num in zip(values, flags, strict=True)
    )
    return f'<tr><th scope="row">{esc(label)}</th>{tds}</tr>'


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section aria-labelledby="{anchor}"><h2 id="{anchor}">{heading}</h2>{body}</section>'


def _top(items: Mapping[str, Any], limit: int) -> list[tuple[str, int]]:
    """The ``limit`` largest items (ties by name), the rest summed as one "other" row."""
    ordered = sorted(((str(k), _int(v)) for k, v in items.items()), key=lambda kv: (-kv[1], kv[0]))
    if len(ordered) <= limit:
        return ordered
    rest = ordered[limit:]
    return [*ordered[:limit], (f"other ({len(rest)} more)", sum(v for _, v in rest))]


def _header(report: Mapping[str, Any]) -> str:
    verdict = str(report.get("verdict", "unknown"))
    passed = verdict == "PASS"
    mark = "\u2714" if passed else "\u2718"  # heavy check mark / ballot x; words say it too
    counts = [_int(f.get("count")) for f in _findings(report).values()]
    total, kinds = sum(counts), sum(1 for c in counts if c)
    words = (
        "no findings" if not total else f"{_plural(total, 'finding')} of {_plural(kinds, 'kind')}"
    )
    try:
        took = f"{float(report.get('took_s', 0)):.1f} s"
    except (TypeError, ValueError):
        took = esc(report.get("took_s"))
    meta = [("Started", esc(report.get("started_at", ""))), ("Took", took)]
    meta.append(("Cluster", esc(report.get("cluster", ""))))
    links = " \u00b7 ".join(
        f'<a href="#{a}">{a.capitalize()}</a>'
        for a in ("read", "findings", "charts", "sinks", "notes")
    )
    return (
        "<header><h1>consentgate audit report</h1>"
        f'<p class="verdict {"pass" if passed else "fail"}" id="verdict">'
        f'<span aria-hidden="true">{mark}</span> Verdict: '
        f"<strong>{esc(verdict)}</strong> \u2014 {words}</p>"
        f"<dl>{''.join(f'<dt>{k}</dt><dd>{v}</dd>' for k, v in meta)}</dl>"
        f'<nav aria-label="Sections">{links}</nav></header>'
    )


def _findings(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        str(k): v if isinstance(v, Mapping) else {} for k, v in _map(report, "findings").items()
    }


def _read_section(report: Mapping[str, Any]) -> str:
    read, known = _map(report, "read"), dict(_READ)
    keys = [k for k, _ in _READ if k in read] + [k for k in read if k not in known]
    rows = [_row(known.get(k) or str(k), [f"{_int(read[k]):,}"]) for k in keys]
    return _section("read", "What the audit read", _table("Records read", ["What", "Count"], rows))


def _findings_section(report: Mapping[str, Any]) -> str:
    findings, titles = _findings(report), dict(FINDING_KINDS)
    kinds = [k for k, _ in FINDING_KINDS] + sorted(k for k in findings if k not in titles)
    summary, details = [], []
    for n, kind in enumerate(kinds):
        count = _int(findings.get(kind, {}).get("count"))
        title = titles.get(kind, f"Other finding: {kind}")
        label = f'<a href="#finding-{n}">{esc(title)}</a>' if count else esc(title)
        summary.append(
            f'<tr><th scope="row">{label}</th><td><code>{esc(kind)}</code></td>'
            f'<td class="{"num" if count else "num zero"}">{count:,}</td></tr>'
        )
        if count:
            examples = [e for e in _list(findings[kind], "examples") if isinstance(e, Mapping)]
            body = [
                "<tr>"
                + "".join(
                    f"<td{_DETAIL if key == 'detail' else ''}>{esc(e.get(key, ''))}</td>"
                    for key, _ in _EXAMPLE_COLUMNS
                )
                + "</tr>"
                for e in examples
            ]
            caption = f"{title}: {_plural(len(examples), 'example')} of {count:,}"
            table = (
                _table(caption, [h for _, h in _EXAMPLE_COLUMNS], body)
                if examples
                else "<p>No examples were recorded.</p>"
            )
            details.append(f'<h3 id="finding-{n}">{esc(title)} ({count:,})</h3>{table}')
    table = _table("Findings per kind (0 = none found)", ["Finding", "Kind", "Count"], summary)
    return _section("findings", "Findings", table + "".join(details))


def _figure(heading: str, svg: str, caption: str, headers: Sequence[str], rows: list[str]) -> str:
    return (
        f"<h3>{esc(heading)}</h3><figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"
        f"<details><summary>Data table: {esc(heading)}</summary>"
        f"{_table(heading, headers, rows)}</details>"
    )


def _records_chart(series: Mapping[str, Any]) -> str:
    data = _map(series, "records_per_sink")
    buckets = [str(b) for b in _list(data, "buckets")]

    def padded(counts: Any) -> list[int]:
        counts = list(counts) if isinstance(counts, list) else []
        return [_int(c) for c in counts[: len(buckets)]] + [0] * (len(buckets) - len(counts))

    per_sink = {str(k): padded(v) for k, v in _map(data, "sinks").items()}
    ranked = sorted(per_sink, key=lambda k: (-sum(per_sink[k]), k))
    lines = [Series(k, per_sink[k], PALETTE[n]) for n, k in enumerate(ranked[:TOP_SINKS])]
    if rest := ranked[TOP_SINKS:]:
        summed = [sum(col) for col in zip(*(per_sink[k] for k in rest), strict=True)]
        lines.append(Series(f"other ({len(rest)} sinks)", summed, OTHER))
    labels = [b[5:16].replace("T", " ") if len(b) >= 16 else b for b in buckets]
    title = "Sink records per time bucket"
    desc = (
        f"Stacked bars: records written to each sink per {_int(data.get('bucket_seconds')):,} s "
        f"bucket, {len(buckets)} buckets, the {TOP_SINKS} largest sinks, the rest as other."
    )
    caption = (
        f"Records per sink over time ({_plural(len(per_sink), 'sink')}; the {TOP_SINKS} largest "
        "shown, the others summed). Bars stack in legend order, bottom up."
    )
    rows = [
        _row(b, [f"{s.values[i]:,}" for s in lines] + [f"{sum(s.values[i] for s in lines):,}"])
        for i, b in enumerate(buckets)
    ]
    svg = stacked("chart-records", title, desc, labels, lines)
    return _figure(title, svg, caption, ["Bucket start", *(s.name for s in lines), "Total"], rows)


def _bars_chart(
    chart_id: str, title: str, caption: str, what: str, items: Mapping[str, Any]
) -> str:
    top = _top(items, TOP_RECIPIENTS)
    svg = hbars(chart_id, title, f"Horizontal bars, {len(top)} rows, largest first: {what}.", top)
    rows = [_row(label, [f"{value:,}"]) for label, value in top]
    return _figure(title, svg, caption, [what, "Count"], rows)


def _charts_section(report: Mapping[str, Any]) -> str:
    series = _map(report, "series")
    denials = ("chart-denials", "Denials by reason", "Sink outcomes denied, per reason code.")
    provisions = (
        "chart-provisions",
        "Provisions per recipient",
        f"Provision ledger records per recipient (the {TOP_RECIPIENTS} largest, "
        "the others summed).",
    )
    return _section(
        "charts",
        "Charts",
        _records_chart(series)
        + _bars_chart(*denials, "Reason", _map(series, "denials_by_reason"))
        + _bars_chart(*provisions, "Recipient", _map(series, "provisions_per_recipient")),
    )


def _sinks_section(report: Mapping[str, Any]) -> str:
    rows = []
    for sink in (s for s in _list(report, "sinks") if isinstance(s, Mapping)):
        versions = ", ".join(str(v) for v in _list(sink, "policy_versions"))
        recipient = sink.get("recipient")
        values = [esc(sink.get(k, "")) for k in ("name", "purpose")]
        values.append("first party" if recipient is None else esc(recipient))
        values += [f"{_int(sink.get(k)):,}" for k in ("records", "retractions", "in_flight")]
        values += [esc(versions), "yes" if sink.get("declared") else "no"]
        rows.append(
            _row(str(sink.get("topic", "")), values, [False] * 3 + [True] * 3 + [False] * 2)
        )
    headers = ["Topic", "Name", "Purpose", "Recipient", "Records", "Retractions", "In flight"]
    headers += ["Policy versions", "Declared in the policy"]
    return _section("sinks", "Sinks", _table(_plural(len(rows), "sink"), headers, rows))


def _notes_section(report: Mapping[str, Any]) -> str:
    items = "".join(f"<li>{esc(n)}</li>" for n in _list(report, "notes"))
    return _section("notes", "Notes", f"<ul>{items}</ul>" if items else "<p>No notes.</p>")


def render_html(report: Mapping[str, Any]) -> str:
    """The whole report as one HTML document (a string; write it as UTF-8)."""
    title = (
        f"consentgate audit: {report.get('verdict', 'unknown')} ({report.get('started_at', '')})"
    )
    sections = (_read_section, _findings_section, _charts_section, _sinks_section, _notes_section)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}"/>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        + _header(report)
        + "<main>"
        + "".join(section(report) for section in sections)
        + "</main></body></html>\n"
    )
