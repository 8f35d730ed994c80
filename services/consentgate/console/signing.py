"""Signed, expiring tokens: ``base64url(json payload) "." base64url(HMAC-SHA256)``.

One :class:`Signer` per key and purpose: the purpose is part of what is signed, so a token
made for one use (a session cookie) is refused for another (a preference link) even under
the same key. A token carries its expiry (``exp``, Unix seconds); :meth:`Signer.verify`
refuses a token that is malformed, signed with another key or purpose, or expired, and
compares signatures in constant time. Pure: the clock is a parameter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

__all__ = ["BadToken", "Signer"]

MAX_TOKEN = 4096


class BadToken(ValueError):
    """A token that is malformed, tampered with, for another purpose, or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(
        self, key: str | bytes, purpose: str, clock: Callable[[], float] = time.time
    ) -> None:
        raw = key.encode() if isinstance(key, str) else key
        if len(raw) < 16:
            raise ValueError("a signing key needs 16 bytes or more")
        self._key = hmac.new(raw, b"consentgate-console:" + purpose.encode(), "sha256").digest()
        self.clock = clock

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())

    def sign(self, payload: dict[str, Any], ttl: float) -> str:
        """A token of ``payload`` (JSON-able; ``exp`` is added) valid for ``ttl`` seconds."""
        data = {**payload, "exp": int(self.clock() + ttl)}
        body = _b64(json.dumps(data, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{self._mac(body)}"

    def verify(self, token: str) -> dict[str, Any]:
        """The payload of a valid, unexpired token; BadToken otherwise."""
        if not token or len(token) > MAX_TOKEN or token.count(".") != 1:
            raise BadToken("malformed token")
        body, mac = token.split(".")
        try:
            expected = self._mac(body)
        except UnicodeEncodeError:
            raise BadToken("malformed token") from None
        if not hmac.compare_digest(expected.encode(), mac.encode("utf-8", "surrogateescape")):
            raise BadToken("bad signature")
        try:
            data = json.loads(_unb64(body))
        except (ValueError, binascii.Error):
            raise BadToken("malformed payload") from None
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int):
            raise BadToken("malformed payload")
        if data["exp"] <= self.clock():
            raise BadToken("expired")
        return data

    def digest(self, text: str) -> str:
        """An HMAC of ``text`` under this signer's key (e.g. a CSRF token of a session)."""
        return self._mac(_b64(text.encode()))
