"""Building the console from its settings, and mounting it on the consent API's app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from consentgate.console.auth import Credentials
from consentgate.console.csrf import CsrfTokens
from consentgate.console.links import LinkSigner
from consentgate.console.replays import ReplayWatch
from consentgate.console.session import Sessions
from consentgate.console.settings import MIN_KEY_LENGTH, ConsoleSettings
from consentgate.console.sources import ReportCache, Sources
from consentgate.console.state import Console, CsrfRefused, LoginRequired, NotEnabled
from consentgate.ops.report import ReportTopics
from consentgate.policy import Policy, PseudonymKeys
from consentgate.serde import Serde

__all__ = ["ConsoleSettings", "build_console", "mount_console"]


def _key(value: Any, name: str) -> str:
    key: str = value.get_secret_value()
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"CONSENTGATE_CONSOLE_{name} needs {MIN_KEY_LENGTH} characters or more")
    return key


def build_console(
    settings: ConsoleSettings,
    *,
    kafka: dict[str, Any],
    policy: Policy,
    serde: Serde,
    topics: ReportTopics,
    dead_letters: str,
    keys: PseudonymKeys | None,
) -> Console | None:
    """The console the settings ask for (None: neither part configured); ValueError for
    unusable settings (a short key, a malformed hash). The message never holds a secret."""
    if not settings.operators_enabled and not settings.subjects_enabled:
        return None
    if settings.session_key is None:
        raise ValueError("the console needs CONSENTGATE_CONSOLE_SESSION_KEY")
    session_key = _key(settings.session_key, "SESSION_KEY")
    credentials = None
    if settings.operators_enabled and settings.user:
        credentials = Credentials(
            settings.user,
            password=settings.password.get_secret_value() if settings.password else None,
            password_hash=(
                settings.password_hash.get_secret_value() if settings.password_hash else None
            ),
        )
    links = None
    if settings.link_key is not None:
        link_key = _key(settings.link_key, "LINK_KEY")
        if link_key == session_key:
            raise ValueError("CONSENTGATE_CONSOLE_LINK_KEY must differ from the session key")
        links = LinkSigner(link_key)
    cache = ReportCache(settings.cache_seconds)
    return Console(
        settings,
        Sessions(session_key),
        CsrfTokens(session_key),
        credentials,
        links,
        Sources(kafka, policy, serde, topics, dead_letters, keys, cache),
        ReplayWatch(),
    )


def mount_console(console: Console) -> Callable[[FastAPI], None]:
    """What ``create_app(console=...)`` calls: the console's routes and error pages."""

    def mount(app: FastAPI) -> None:
        from consentgate.console import (  # noqa: PLC0415 - jinja2 only where mounted
            pages_login,
            pages_operator,
            pages_subject,
            render,
        )

        app.state.console = console

        @app.exception_handler(LoginRequired)
        async def login_required(request: Request, __: LoginRequired) -> Response:
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            return pages_login.login_page(
                console, 401, target=target if request.method == "GET" else None
            )

        @app.exception_handler(CsrfRefused)
        async def csrf_refused(_: Request, __: CsrfRefused) -> Response:
            return render.render(
                "unavailable.html",
                {
                    "nav": None,
                    "what": "this form",
                    "reason": "the form's security token is missing or does not match your "
                    "session: reload the page and send it again",
                },
                status=403,
            )

        @app.exception_handler(NotEnabled)
        async def not_enabled(_: Request, __: NotEnabled) -> Response:
            return Response("not found", status_code=404, headers=render.HEADERS)

        @app.get("/console/console.css", include_in_schema=False)
        async def stylesheet() -> Response:
            return Response(
                render.stylesheet(), media_type="text/css", headers=render.STATIC_HEADERS
            )

        for module in (pages_login, pages_operator, pages_subject):
            app.include_router(module.router, include_in_schema=False)

    return mount
