"""The operators' credentials: one user and a password, or its scrypt hash, from settings.

A hash is ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` (:func:`hash_password`; ``consentgate
consent console-password`` prints one). Both the user and the password are compared in
constant time and both always, so a wrong user costs what a wrong password costs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

__all__ = ["Credentials", "hash_password", "verify_hash"]

_N, _R, _P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_hash(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (False for a malformed hash)."""
    try:
        kind, n, r, p, salt, digest = encoded.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest, validate=True)
        got = hashlib.scrypt(
            password.encode("utf-8", "surrogateescape"),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(want),
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, want)


class Credentials:
    """The one operator account (``password_hash`` wins over ``password``)."""

    def __init__(self, user: str, *, password: str | None, password_hash: str | None) -> None:
        if not user or not (password or password_hash):
            raise ValueError("the console needs a user and a password or a password hash")
        if password_hash is not None and not password_hash.startswith("scrypt$"):
            raise ValueError("CONSENTGATE_CONSOLE_PASSWORD_HASH is not an scrypt$... hash")
        self.user = user
        self._password = password
        self._hash = password_hash

    def check(self, user: str, password: str) -> bool:
        user_ok = hmac.compare_digest(
            user.encode("utf-8", "surrogateescape"), self.user.encode("utf-8")
        )
        if self._hash is not None:
            password_ok = verify_hash(password, self._hash)
        else:
            password_ok = hmac.compare_digest(
                password.encode("utf-8", "surrogateescape"),
                (self._password or "").encode("utf-8"),
            )
        return user_ok and password_ok
