"""The console's signed tokens, sessions, CSRF tokens, links and credentials (pure)."""

from __future__ import annotations

import base64
import json

import pytest

from consentgate.console.auth import Credentials, hash_password, verify_hash
from consentgate.console.csrf import CsrfTokens
from consentgate.console.links import LinkSigner
from consentgate.console.session import Sessions
from consentgate.console.signing import BadToken, Signer

pytestmark = pytest.mark.unit

KEY = "unit-test-key-0123456789abcdefghijkl"
OTHER = "another-key-0123456789abcdefghijklmn"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _forge(token: str, **changes: object) -> str:
    """``token`` with its payload changed, the signature kept."""
    body, mac = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data.update(changes)
    raw = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{raw}.{mac}"


def test_a_signed_token_round_trips_until_it_expires() -> None:
    clock = Clock()
    signer = Signer(KEY, "p", clock)
    token = signer.sign({"sub": "S1"}, ttl=60)
    assert signer.verify(token)["sub"] == "S1"
    clock.now += 59
    assert signer.verify(token)["sub"] == "S1"
    clock.now += 1
    with pytest.raises(BadToken, match="expired"):
        signer.verify(token)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: _forge(t, sub="S2"),  # another subject, same signature
        lambda t: _forge(t, exp=2_000_000_000),  # a longer life
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: t.replace(".", ""),
        lambda t: "",
        lambda t: t + ".x",
        lambda t: "é" + t,
        lambda t: "a" * 5000,
    ],
)
def test_a_tampered_token_is_refused(mangle: object) -> None:
    signer = Signer(KEY, "p", Clock())
    token = signer.sign({"sub": "S1"}, ttl=60)
    with pytest.raises(BadToken):
        signer.verify(mangle(token))  # type: ignore[operator]


def test_a_token_of_another_key_or_purpose_is_refused() -> None:
    clock = Clock()
    token = Signer(KEY, "session", clock).sign({"k": "operator"}, 60)
    with pytest.raises(BadToken):
        Signer(OTHER, "session", clock).verify(token)
    with pytest.raises(BadToken):
        Signer(KEY, "subject-link", clock).verify(token)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError):
        Signer("short", "p")


def test_a_link_names_its_subject_and_expires() -> None:
    clock = Clock()
    links = LinkSigner(KEY, clock)
    url = links.url("https://example.test/", "<b>S&1</b>", ttl=3600)
    assert url.startswith("https://example.test/console/me?t=")
    token = url.split("t=", 1)[1]
    link = links.verify(token)
    assert link.subject_id == "<b>S&1</b>"
    assert link.expires == int(clock.now + 3600)
    clock.now += 3600
    with pytest.raises(BadToken):
        links.verify(token)
    with pytest.raises(ValueError):
        links.token("", 60)


def test_a_session_token_is_no_link_and_a_link_no_session() -> None:
    clock = Clock()
    sessions = Sessions(KEY, clock)
    cookie, _ = sessions.issue("subject", 60, "S1")
    with pytest.raises(BadToken):
        LinkSigner(KEY, clock).verify(cookie)
    link = LinkSigner(KEY, clock).token("S1", 60)
    with pytest.raises(BadToken):
        sessions.read(link, "subject")


def test_sessions_are_of_one_kind() -> None:
    clock = Clock()
    sessions = Sessions(KEY, clock)
    cookie, session = sessions.issue("operator", 60)
    assert sessions.read(cookie, "operator") == session
    with pytest.raises(BadToken):
        sessions.read(cookie, "subject")
    with pytest.raises(BadToken):
        sessions.read(None, "operator")
    subject_cookie, _ = sessions.issue("subject", 60, "S1")
    assert sessions.read(subject_cookie, "subject").subject_id == "S1"
    with pytest.raises(BadToken):
        sessions.read(subject_cookie, "operator")
    clock.now += 61
    with pytest.raises(BadToken):
        sessions.read(cookie, "operator")


def test_csrf_tokens_are_bound_to_their_session() -> None:
    clock = Clock()
    sessions = Sessions(KEY, clock)
    csrf = CsrfTokens(KEY)
    _, one = sessions.issue("operator", 60)
    _, two = sessions.issue("operator", 60)
    token = csrf.token(one)
    assert csrf.check(one, token)
    assert not csrf.check(two, token)
    assert not csrf.check(one, None)
    assert not csrf.check(one, "")
    assert not csrf.check(one, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not CsrfTokens(OTHER).check(one, token)


def test_passwords_and_their_hashes() -> None:
    encoded = hash_password("correct horse battery", n=2**10)
    assert encoded.startswith("scrypt$1024$")
    assert verify_hash("correct horse battery", encoded)
    assert not verify_hash("correct horse batter", encoded)
    assert not verify_hash("x", "scrypt$bad")
    assert not verify_hash("x", "bcrypt$1$2$3$4$5")
    hashed = Credentials("ops", password=None, password_hash=encoded)
    assert hashed.check("ops", "correct horse battery")
    assert not hashed.check("op", "correct horse battery")
    plain = Credentials("ops", password="pw-0123456789", password_hash=None)
    assert plain.check("ops", "pw-0123456789")
    assert not plain.check("ops", "pw-012345678")
    assert not plain.check("ops\udcff", "pw-0123456789")
    with pytest.raises(ValueError):
        Credentials("ops", password=None, password_hash=None)
    with pytest.raises(ValueError):
        Credentials("ops", password=None, password_hash="md5$x")
