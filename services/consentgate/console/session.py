"""Sessions as signed cookies: an operator's after the login, a subject's after a link.

A session is a :class:`~consentgate.console.signing.Signer` token of ``{"k": kind, "sub":
subject (subjects only), "n": nonce}`` under the session key, in an HttpOnly cookie scoped to
``/console`` (operators: SameSite=Strict; subjects: SameSite=Lax, since they arrive from a
link in a mail; Secure unless ``CONSENTGATE_CONSOLE_SECURE_COOKIES=false``). The nonce binds
the session's CSRF token (:mod:`consentgate.console.csrf`). Sessions are stateless: they
end when they expire or the browser drops the cookie (logout); rotating the session key
ends every session at once.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from consentgate.console.signing import BadToken, Signer

__all__ = ["OPERATOR_COOKIE", "SUBJECT_COOKIE", "Session", "Sessions"]

OPERATOR_COOKIE = "cg_console"
SUBJECT_COOKIE = "cg_subject"
LOGIN_COOKIE = "cg_login"
Kind = Literal["operator", "subject", "login"]


@dataclass(frozen=True, slots=True)
class Session:
    kind: Kind
    nonce: str
    subject_id: str | None = None
    expires: int = 0


class Sessions:
    def __init__(self, key: str, clock: Callable[[], float] = time.time) -> None:
        self._signer = Signer(key, "session", clock)

    def issue(self, kind: Kind, ttl: float, subject_id: str | None = None) -> tuple[str, Session]:
        """A new session of ``kind`` and its cookie value."""
        nonce = secrets.token_urlsafe(18)
        payload: dict[str, str] = {"k": kind, "n": nonce}
        if subject_id is not None:
            payload["sub"] = subject_id
        token = self._signer.sign(payload, ttl)
        return token, self.read(token, kind)

    def read(self, token: str | None, kind: Kind) -> Session:
        """The session in cookie value ``token``; BadToken if absent, invalid or another kind."""
        if not token:
            raise BadToken("no session")
        data = self._signer.verify(token)
        nonce, subject = data.get("n"), data.get("sub")
        if data.get("k") != kind or not isinstance(nonce, str):
            raise BadToken("not a session of this kind")
        if kind == "subject" and not isinstance(subject, str):
            raise BadToken("a subject session without its subject")
        return Session(kind, nonce, subject if isinstance(subject, str) else None, data["exp"])
