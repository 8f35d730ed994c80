"""``/console/login`` and ``/console/logout``: the operators' session.

The login form carries a CSRF token bound to a short-lived pre-login cookie; a wrong user or
password answers 401 with the form again (the same words for both), a missing token 403.
The password check (scrypt) runs in the threadpool.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from consentgate.console.render import HEADERS, render
from consentgate.console.session import LOGIN_COOKIE, OPERATOR_COOKIE, Session
from consentgate.console.signing import BadToken
from consentgate.console.state import Console, CsrfRefused, NotEnabled, Operator, Shared
from consentgate.console.state import checked_form as _checked_form

__all__ = ["login_page", "router", "safe_next"]

router = APIRouter()
LOGIN_TTL = 3600.0


def safe_next(target: str | None) -> str:
    """``target`` if it is a console page of this site, else the overview (no open redirect)."""
    if (
        target
        and target.startswith("/console/")
        and not target.startswith(("/console/login", "/console/logout"))
        and "//" not in target
        and "\\" not in target
        and len(target) <= 2048
    ):
        return target
    return "/console/overview"


def login_page(
    console: Console, status: int = 200, error: str | None = None, target: str | None = None
) -> Response:
    """The login form with a fresh pre-login session (its CSRF token in the form); after the
    login the browser goes to ``target`` (a console page) or the overview."""
    token, session = console.sessions.issue("login", LOGIN_TTL)
    response = render(
        "login.html",
        {
            "csrf_token": console.csrf.token(session),
            "error": error,
            "nav": None,
            "next": safe_next(target),
        },
        status,
    )
    console.set_cookie(response, LOGIN_COOKIE, token, LOGIN_TTL, "strict")
    return response


@router.get("/console/login")
async def login_form(console: Shared) -> Response:
    if console.credentials is None:
        raise NotEnabled()
    return login_page(console)


@router.post("/console/login")
async def login(request: Request, console: Shared) -> Response:
    if console.credentials is None:
        raise NotEnabled()
    try:
        pre: Session = console.sessions.read(request.cookies.get(LOGIN_COOKIE), "login")
    except BadToken:
        raise CsrfRefused() from None
    form = await _checked_form(request, pre)
    user, password = form.get("user"), form.get("password")
    credentials = console.credentials
    ok = (
        isinstance(user, str)
        and isinstance(password, str)
        and await run_in_threadpool(credentials.check, user, password)
    )
    target = form.get("next")
    target = target if isinstance(target, str) else None
    if not ok:
        return login_page(console, 401, "Wrong user name or password.", target)
    token, _ = console.sessions.issue("operator", console.settings.session_ttl)
    response = RedirectResponse(safe_next(target), status_code=303, headers=HEADERS)
    console.set_cookie(response, OPERATOR_COOKIE, token, console.settings.session_ttl, "strict")
    response.delete_cookie(LOGIN_COOKIE, path="/console")
    return response


@router.post("/console/logout")
async def logout(request: Request, console: Shared, session: Operator) -> Response:
    await _checked_form(request, session)
    response = RedirectResponse("/console/login", status_code=303, headers=HEADERS)
    response.delete_cookie(OPERATOR_COOKIE, path="/console")
    return response
