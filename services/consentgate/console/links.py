"""Subjects' preference links: ``<base_url>/console/me?t=<token>``, signed and expiring.

The token is a :class:`~consentgate.console.signing.Signer` token of ``{"sub": subject}``
under the link key (``CONSENTGATE_CONSOLE_LINK_KEY``). Whoever holds the link can see and
change that subject's consent until it expires: the site sends it to the subject through
its own login (out of scope here). ``consentgate consent link SUBJECT [--ttl]`` prints one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from consentgate.console.signing import BadToken, Signer

__all__ = ["LINK_PATH", "LinkSigner", "SubjectLink"]

LINK_PATH = "/console/me"
MAX_SUBJECT = 256


@dataclass(frozen=True, slots=True)
class SubjectLink:
    subject_id: str
    expires: int  # Unix seconds


class LinkSigner:
    def __init__(self, key: str, clock: Callable[[], float] = time.time) -> None:
        self._signer = Signer(key, "subject-link", clock)

    def token(self, subject_id: str, ttl: float) -> str:
        if not 1 <= len(subject_id) <= MAX_SUBJECT:
            raise ValueError("a subject id has 1 to 256 characters")
        return self._signer.sign({"sub": subject_id}, ttl)

    def url(self, base_url: str, subject_id: str, ttl: float) -> str:
        query = urlencode({"t": self.token(subject_id, ttl)})
        return f"{base_url.rstrip('/')}{LINK_PATH}?{query}"

    def verify(self, token: str) -> SubjectLink:
        """The link's subject; BadToken if tampered with, for another use, or expired."""
        data = self._signer.verify(token)
        subject = data.get("sub")
        if not isinstance(subject, str) or not 1 <= len(subject) <= MAX_SUBJECT:
            raise BadToken("malformed payload")
        return SubjectLink(subject, int(data["exp"]))
