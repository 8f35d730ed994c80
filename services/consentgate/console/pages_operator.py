"""The operators' pages: overview, subject, recipients, recipient (with its CSV), replays and
the last audit's HTML report. Every page needs an operator session; every Kafka read runs in
the threadpool; reports are the operators' own (:mod:`consentgate.ops.report`).
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from confluent_kafka import KafkaException
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from consentgate.console.overview import read_overview
from consentgate.console.render import HEADERS, page_of, render
from consentgate.console.replays import read_reports
from consentgate.console.state import Console, NotEnabled, Operator, Shared
from consentgate.console.timeline_svg import interval_rows, timeline_svg
from consentgate.errors import ConsentgateError
from consentgate.models.records import ProvisionRecord
from consentgate.ops.report_format import Section, render_csv

__all__ = ["router"]

router = APIRouter()
MAX_ID = 256
READ_ERRORS = (ConsentgateError, KafkaException, TimeoutError, OSError)


def _base(console: Console, request: Request, nav: str, session: Any) -> dict[str, Any]:
    return {"nav": nav, "csrf_token": console.csrf.token(session), "path": request.url.path}


def _number(query: Mapping[str, str], name: str) -> int:
    text = query.get(name, "1")
    return int(text) if text.isdigit() and len(text) < 9 else 1


def _size(console: Console, query: Mapping[str, str]) -> int:
    text = query.get("size", "")
    size = int(text) if text.isdigit() and len(text) < 6 else console.settings.page_size
    return min(max(size, 1), 1000)


def _unavailable(context: dict[str, Any], what: str, exc: Exception) -> Response:
    return render("unavailable.html", {**context, "what": what, "reason": str(exc)}, status=503)


def _read_at(made: float) -> datetime:
    """The wall time of a cache entry made at monotonic ``made``."""
    return datetime.fromtimestamp(time.time() - (time.monotonic() - made), UTC)


@router.get("/console")
async def home(session: Operator) -> Response:
    return RedirectResponse("/console/overview", status_code=303, headers=HEADERS)


@router.get("/console/overview")
async def overview(request: Request, console: Shared, session: Operator) -> Response:
    settings = console.settings
    data, made = await run_in_threadpool(
        console.sources.cache.get,
        ("overview",),
        lambda: read_overview(
            console.sources,
            fold_group=settings.fold_group,
            audit_json=settings.audit_json,
            audit_html=settings.audit_html,
        ),
    )
    return render(
        "overview.html",
        {
            **_base(console, request, "overview", session),
            "o": data,
            "read_at": _read_at(made),
            "cache_seconds": settings.cache_seconds,
            "sinks": console.sources.policy.sinks,
        },
    )


def _per_recipient(ledger: list[ProvisionRecord]) -> list[dict[str, Any]]:
    groups: dict[str, list[ProvisionRecord]] = defaultdict(list)
    for record in ledger:
        groups[record.recipient_id].append(record)
    return [
        {
            "recipient_id": rid,
            "name": records[-1].recipient_name,
            "provisions": len(records),
            "first": min(r.provision_date for r in records),
            "last": max(r.provision_date for r in records),
            "sinks": tuple(sorted({r.sink for r in records})),
            "data_items": tuple(sorted({i for r in records for i in r.data_items})),
        }
        for rid, records in sorted(groups.items())
    ]


@router.get("/console/subject")
async def subject(request: Request, console: Shared, session: Operator) -> Response:
    query = dict(request.query_params)
    context = _base(console, request, "subject", session)
    subject_id = query.get("id", "")
    if not subject_id or len(subject_id) > MAX_ID:
        error = "A subject id has 1 to 256 characters." if subject_id else None
        return render("subject_search.html", {**context, "error": error}, 422 if error else 200)
    sources = console.sources
    if query.get("fresh"):
        sources.cache.drop(("subject", subject_id))
    try:
        view, made = await run_in_threadpool(sources.cached_subject, subject_id)
    except READ_ERRORS as exc:
        return _unavailable(context, f"the report of subject {subject_id}", exc)
    records, report = view.records, view.report
    size = _size(console, query)
    keep = {k: v for k, v in query.items() if k != "fresh"}
    sections: list[tuple[Section, Any]] = [
        (s, page_of(s.rows, _number(query, f"p_{s.name}"), size, f"p_{s.name}", keep))
        for s in report.sections
    ]
    rows = interval_rows(records.timeline)
    latest = page_of(view.latest, _number(query, "p_latest"), size, "p_latest", keep)
    return render(
        "subject.html",
        {
            **context,
            "subject_id": subject_id,
            "report": report,
            "sections": sections,
            "intervals": rows,
            "svg": timeline_svg(rows, view.as_of, subject_id),
            "per_recipient": _per_recipient(records.ledger),
            "latest": latest,
            "read_at": _read_at(made),
            "cache_seconds": console.settings.cache_seconds,
        },
    )


@router.get("/console/recipients")
async def recipients(request: Request, console: Shared, session: Operator) -> Response:
    policy = console.sources.policy
    sinks: dict[str, list[str]] = defaultdict(list)
    for sink in policy.sinks:
        if sink.recipient is not None:
            sinks[sink.recipient].append(sink.name)
    return render(
        "recipients.html",
        {
            **_base(console, request, "recipients", session),
            "recipients": policy.recipients,
            "sinks": sinks,
        },
    )


def _since(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


async def _recipient_report(console: Console, query: Mapping[str, str]) -> tuple[Any, float]:
    recipient_id = query.get("id", "")
    since = _since(query.get("since"))
    if query.get("fresh"):
        console.sources.cache.drop(("recipient", recipient_id, since.isoformat() if since else ""))
    return await run_in_threadpool(console.sources.cached_recipient, recipient_id, since)


@router.get("/console/recipient")
async def recipient(request: Request, console: Shared, session: Operator) -> Response:
    query = dict(request.query_params)
    context = _base(console, request, "recipients", session)
    recipient_id = query.get("id", "")
    if not recipient_id or len(recipient_id) > MAX_ID:
        return RedirectResponse("/console/recipients", status_code=303, headers=HEADERS)
    try:
        report, made = await _recipient_report(console, query)
    except READ_ERRORS as exc:
        return _unavailable(context, f"the provision record of {recipient_id}", exc)
    section = report.section("provisions")
    keep = {k: v for k, v in query.items() if k in ("id", "size", "since")}
    page = page_of(section.rows, _number(query, "p"), _size(console, query), "p", keep)
    csv_query = {k: v for k, v in keep.items() if k != "size"}
    return render(
        "recipient.html",
        {
            **context,
            "recipient_id": recipient_id,
            "since": query.get("since", ""),
            "report": report,
            "section": section,
            "page": page,
            "csv_query": csv_query,
            "read_at": _read_at(made),
            "cache_seconds": console.settings.cache_seconds,
        },
    )


_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


@router.get("/console/recipient.csv")
async def recipient_csv(request: Request, console: Shared, session: Operator) -> Response:
    query = dict(request.query_params)
    recipient_id = query.get("id", "")
    if not recipient_id or len(recipient_id) > MAX_ID:
        return Response("a recipient id is needed", status_code=422, headers=HEADERS)
    try:
        report, _ = await _recipient_report(console, query)
    except READ_ERRORS as exc:
        return Response(f"cannot be read right now: {exc}", status_code=503, headers=HEADERS)
    name = _FILENAME.sub("_", recipient_id)[:80] or "recipient"
    return Response(
        render_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={
            **HEADERS,
            "Content-Disposition": f'attachment; filename="provisions-{name}.csv"',
        },
    )


@router.get("/console/replays")
async def replays(request: Request, console: Shared, session: Operator) -> Response:
    context = _base(console, request, "replays", session)
    jobs, problem = None, None
    try:
        jobs = await run_in_threadpool(console.replays.jobs, console.sources.kafka)
    except READ_ERRORS as exc:
        problem = str(exc)
    reports, reports_missing = await run_in_threadpool(
        read_reports, console.settings.replay_reports
    )
    return render(
        "replays.html",
        {
            **context,
            "jobs": jobs,
            "problem": problem,
            "reports": reports,
            "reports_missing": reports_missing,
            "read_at": datetime.now(UTC),
        },
    )


AUDIT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


@router.get("/console/audit.html")
async def audit_html(console: Shared, session: Operator) -> Response:
    path = console.settings.audit_html
    if path is None:
        raise NotEnabled()
    try:
        body = await run_in_threadpool(path.read_bytes)
    except OSError:
        return Response("the audit's HTML report is not there", status_code=404, headers=HEADERS)
    return Response(
        body,
        media_type="text/html; charset=utf-8",
        headers={**HEADERS, "Content-Security-Policy": AUDIT_CSP},
    )
