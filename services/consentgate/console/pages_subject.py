"""A subject's own page, ``/console/me``, reached through a signed, expiring link.

``GET /console/me?t=<token>`` checks the link (403 if tampered with, for another use or
expired), starts a subject session (a cookie, at most as long as the link) and redirects to
``/console/me`` so the token leaves the address bar. The page shows every purpose and
recipient of the policy with its state and a toggle (a plain form POST), the subject's
change history and who received their data (the subject report without its decisions).
``POST /console/me`` records the change through the consent service's write path (the
API's: :class:`~consentgate.consent.service.ConsentService` rules, method ``WEB_FORM``,
actor ``console:subject``); the page shows it pending until consent-state shows it.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from consentgate.consent.api import _Api, _AppendFailed
from consentgate.consent.requests import ChangeRequest
from consentgate.console.links import LinkSigner
from consentgate.console.preferences import grant_keys, preferences
from consentgate.console.render import HEADERS, page_of, render
from consentgate.console.session import SUBJECT_COOKIE, Session
from consentgate.console.signing import BadToken
from consentgate.console.state import Console, NotEnabled, Shared, checked_form
from consentgate.errors import ConsentgateError, ValidationError
from consentgate.models.consent import ConsentAction, ConsentChange
from consentgate.ops.report import build_subject_report

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter()
ACTOR = "console:subject"
READ_ERRORS = (ConsentgateError, KafkaException, TimeoutError, OSError)


def _refused(why: str, status: int = 403) -> Response:
    return render("link_refused.html", {"nav": None, "why": why}, status)


def _links(console: Console) -> LinkSigner:
    if console.links is None:
        raise NotEnabled()
    return console.links


def _session(request: Request, console: Console) -> Session | None:
    try:
        return console.sessions.read(request.cookies.get(SUBJECT_COOKIE), "subject")
    except BadToken:
        return None


@router.get("/console/me")
async def me(request: Request, console: Shared) -> Response:
    links = _links(console)
    token = request.query_params.get("t")
    if token is not None:
        try:
            link = links.verify(token)
        except BadToken as exc:
            log.info("console: a preference link refused (%s)", exc)
            return _refused("This link is not valid: it has expired or was changed.")
        ttl = min(console.settings.subject_session_ttl, link.expires - time.time())
        cookie, _ = console.sessions.issue("subject", ttl, link.subject_id)
        response = RedirectResponse("/console/me", status_code=303, headers=HEADERS)
        console.set_cookie(response, SUBJECT_COOKIE, cookie, ttl, "lax")
        return response
    session = _session(request, console)
    if session is None or session.subject_id is None:
        return _refused(
            "Your session has ended. Open the link you were sent again, or ask for a new one.",
            401,
        )
    return await _page(request, console, session, session.subject_id)


async def _page(request: Request, console: Console, session: Session, subject_id: str) -> Response:
    sources = console.sources
    context: dict[str, Any] = {
        "nav": None,
        "subject_mode": True,
        "csrf_token": console.csrf.token(session),
        "subject_id": subject_id,
    }
    try:
        records = await run_in_threadpool(sources.subject, subject_id, decisions=False)
    except READ_ERRORS as exc:
        return render(
            "unavailable.html",
            {**context, "what": "your consent record", "reason": str(exc)},
            status=503,
        )
    now = datetime.now(UTC)
    report = build_subject_report(records, sources.topics, now)
    prefs = preferences(sources.policy, records, report.section("current_state").rows)
    query = dict(request.query_params)
    size = console.settings.page_size
    history = report.section("consent_changes")
    provisions = report.section("provisions")
    return render(
        "me.html",
        {
            **context,
            "prefs": prefs,
            "pending": any(p.pending is not None for p in prefs),
            "sent": query.get("sent") == "1",
            "history": history,
            "history_page": page_of(
                list(reversed(history.rows)), _int(query.get("p_history")), size, "p_history", {}
            ),
            "provisions": provisions,
            "provisions_page": page_of(
                provisions.rows, _int(query.get("p_provisions")), size, "p_provisions", {}
            ),
            "retractions": report.section("retractions").rows,
            "recipients": {r.id: r for r in sources.policy.recipients},
            "read_at": now,
        },
    )


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() and len(text) < 9 else 1


@router.post("/console/me")
async def change(request: Request, console: Shared) -> Response:
    _links(console)
    session = _session(request, console)
    if session is None or session.subject_id is None:
        return _refused("Your session has ended. Open the link you were sent again.", 401)
    form = await checked_form(request, session)
    subject_id = session.subject_id
    purpose = form.get("purpose")
    recipient = form.get("recipient") or None
    action = form.get("action")
    keys = grant_keys(console.sources.policy)
    if (
        not isinstance(purpose, str)
        or not (recipient is None or isinstance(recipient, str))
        or (purpose, recipient) not in keys
        or action not in ("grant", "withdraw")
    ):
        return render(
            "unavailable.html",
            {"nav": None, "what": "this change", "reason": "unknown purpose or action"},
            status=422,
        )
    api: _Api = request.app.state.api
    change_id = str(uuid.uuid4())

    def build() -> list[ConsentChange]:
        request_ = ChangeRequest(
            subject_id=subject_id,
            action=ConsentAction.GRANT if action == "grant" else ConsentAction.WITHDRAW,
            purpose=purpose,
            recipient=recipient,
            method="WEB_FORM",
            change_id=change_id,
        )
        return [api.service.change(request_, actor=ACTOR)]

    try:
        await api.write(build, change_id)
    except (_AppendFailed, ValidationError) as exc:
        log.warning("console: a subject's change %s not recorded: %s", change_id, exc)
        return render(
            "unavailable.html",
            {"nav": None, "what": "your change", "reason": str(exc)},
            status=503 if isinstance(exc, _AppendFailed) else 422,
        )
    return RedirectResponse("/console/me?sent=1", status_code=303, headers=HEADERS)
