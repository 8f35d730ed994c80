"""What the console's routes share (``app.state.console``): settings, signers, credentials,
the sources and the replay watch; and the dependencies that check a request's session and
its CSRF token."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from consentgate.console.auth import Credentials
from consentgate.console.csrf import FIELD, CsrfTokens
from consentgate.console.links import LinkSigner
from consentgate.console.replays import ReplayWatch
from consentgate.console.session import OPERATOR_COOKIE, Session, Sessions
from consentgate.console.settings import ConsoleSettings
from consentgate.console.signing import BadToken
from consentgate.console.sources import Sources

__all__ = [
    "Console",
    "CsrfRefused",
    "LoginRequired",
    "NotEnabled",
    "Operator",
    "Shared",
    "checked_form",
    "console_of",
]

log = logging.getLogger(__name__)


class LoginRequired(Exception):
    """No valid operator session: the login page, 401."""


class CsrfRefused(Exception):
    """A POST without its session's CSRF token: 403."""


class NotEnabled(Exception):
    """This part of the console is not configured: 404."""


@dataclass
class Console:
    settings: ConsoleSettings
    sessions: Sessions
    csrf: CsrfTokens
    credentials: Credentials | None
    links: LinkSigner | None
    sources: Sources
    replays: ReplayWatch

    def set_cookie(
        self,
        response: Response,
        name: str,
        value: str,
        max_age: float,
        same_site: Literal["strict", "lax"],
    ) -> None:
        """An HttpOnly cookie for ``/console`` (Secure unless the settings turn it off)."""
        response.set_cookie(
            name,
            value,
            max_age=max(int(max_age), 1),
            path="/console",
            secure=self.settings.secure_cookies,
            httponly=True,
            samesite=same_site,
        )


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


Shared = Annotated[Console, Depends(console_of)]


def _operator(request: Request) -> Session:
    console = console_of(request)
    if console.credentials is None:
        raise NotEnabled()
    try:
        return console.sessions.read(request.cookies.get(OPERATOR_COOKIE), "operator")
    except BadToken:
        raise LoginRequired() from None


Operator = Annotated[Session, Depends(_operator)]


async def checked_form(request: Request, session: Session) -> FormData:
    """The POST's form, once its CSRF token matches ``session`` (CsrfRefused otherwise)."""
    form = await request.form()
    token = form.get(FIELD)
    if not console_of(request).csrf.check(session, token if isinstance(token, str) else None):
        log.warning("console: a POST to %s without its CSRF token refused", request.url.path)
        raise CsrfRefused()
    return form
