"""CSRF tokens: one per session, an HMAC of the session's nonce under the session key.

Every form carries ``csrf_token`` (a hidden field); every POST is refused (403) unless it
matches its session's token (constant-time compare). A token is useless without its
session's cookie and the cookie without the token, and neither can be made without the key.
The login form has a token too, bound to a short-lived pre-login cookie (login CSRF).
"""

from __future__ import annotations

import hmac

from consentgate.console.session import Session
from consentgate.console.signing import Signer

__all__ = ["FIELD", "CsrfTokens"]

FIELD = "csrf_token"


class CsrfTokens:
    def __init__(self, key: str) -> None:
        self._signer = Signer(key, "csrf")

    def token(self, session: Session) -> str:
        return self._signer.digest(f"{session.kind}:{session.nonce}")

    def check(self, session: Session, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(
            self.token(session).encode(), presented.encode("utf-8", "surrogateescape")
        )
