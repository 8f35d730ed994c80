"""The console's security over HTTP, on the real broker: pages need a session (401 and the
login form), every POST its CSRF token (403), a preference link its signature and its time
(403), and a subject id holding markup is rendered escaped."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from consentgate.console.links import LinkSigner
from tests.integration.console_harness import (
    LINK_KEY,
    PASSWORD,
    USER,
    ConsoleProcess,
    cli,
    csrf_of,
    http_login,
)
from tests.integration.router_harness import RouterEnv

pytestmark = pytest.mark.integration

TIMEOUT = 180.0
MARKUP = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;'


@pytest.fixture
def console(router_env: RouterEnv) -> Iterator[ConsoleProcess]:
    process = ConsoleProcess(router_env)
    try:
        process.wait_ready(TIMEOUT)
        yield process
    finally:
        code = process.stop()
    assert code == 0, f"console exit {code}:\n{process.tail()}"


PAGES = [
    "/console",
    "/console/overview",
    "/console/subject?id=S1",
    "/console/recipients",
    "/console/recipient?id=client-01",
    "/console/recipient.csv?id=client-01",
    "/console/replays",
]


def test_pages_without_a_session_answer_401_with_the_login_form(
    console: ConsoleProcess,
) -> None:
    with console.client() as client:
        for path in PAGES:
            answer = client.get(path)
            assert answer.status_code == 401, (path, answer.status_code)
            assert 'action="/console/login"' in answer.text, path
            assert "script-src" not in answer.headers["content-security-policy"]
            assert "default-src 'none'" in answer.headers["content-security-policy"]
        back = client.get("/console/subject?id=S1")
        assert 'name="next" value="/console/subject?id=S1"' in back.text  # after the login
        client.cookies.set("cg_console", "forged.value", path="/console")
        assert client.get("/console/overview").status_code == 401
        # the API's own routes are unchanged
        assert client.get("/healthz").status_code == 200
        assert client.get("/v1/subjects/S1/timeline").status_code == 401


def test_login_needs_its_csrf_token_and_the_right_password(console: ConsoleProcess) -> None:
    with console.client() as client:
        form = client.get("/console/login")
        cookie = form.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        token = csrf_of(form.text)
        data = {"user": USER, "password": PASSWORD}
        assert client.post("/console/login", data=data).status_code == 403
        assert client.post("/console/login", data={**data, "csrf_token": "x"}).status_code == 403
        wrong = client.post(
            "/console/login", data={**data, "password": "wrong", "csrf_token": token}
        )
        assert wrong.status_code == 401
        assert "Wrong user name or password" in wrong.text
        right = client.post(
            "/console/login",
            data={**data, "csrf_token": csrf_of(wrong.text), "next": "https://evil.example/"},
        )
        assert right.status_code == 303, right.text
        assert right.headers["location"] == "/console/overview"
        session = right.headers["set-cookie"]
        assert "cg_console=" in session and "HttpOnly" in session
        assert "samesite=strict" in session.lower()
        assert client.get("/console/overview").status_code == 200
        page = client.get("/console/replays")
        assert page.status_code == 200
        # a POST without the session's token is refused, with it accepted
        assert client.post("/console/logout", data={}).status_code == 403
        assert client.post("/console/logout", data={"csrf_token": "nope"}).status_code == 403
        assert client.get("/console/overview").status_code == 200  # still logged in
        out = client.post("/console/logout", data={"csrf_token": csrf_of(page.text)})
        assert out.status_code == 303
        assert client.get("/console/overview").status_code == 401


def test_a_tampered_or_expired_link_is_refused_and_a_good_one_opens_a_session(
    router_env: RouterEnv, console: ConsoleProcess
) -> None:
    who = f"link-{uuid.uuid4().hex[:8]}"
    router_env.consent(who, "GRANT", "analytics")
    url = cli(console.environ, "consent", "link", who, "--ttl", "10m").strip()
    assert url.startswith(f"{console.url}/console/me?t=")
    token = url.split("t=", 1)[1]
    expired = LinkSigner(LINK_KEY, clock=lambda: time.time() - 3600).token(who, 60)
    other_key = LinkSigner("x" * 40).token(who, 600)
    with console.client() as client:
        for bad in (token[:-3] + "AAA", expired, other_key, "", "garbage"):
            answer = client.get(f"/console/me?t={quote(bad)}")
            assert answer.status_code == 403, (bad, answer.status_code)
            assert "not valid" in answer.text
        assert client.get("/console/me").status_code == 401  # no session yet
        opened = client.get(f"/console/me?t={quote(token)}")
        assert opened.status_code == 303
        assert opened.headers["location"] == "/console/me"
        cookie = opened.headers["set-cookie"]
        assert "cg_subject=" in cookie and "HttpOnly" in cookie
        assert "samesite=lax" in cookie.lower()
        page = client.get("/console/me")
        assert page.status_code == 200, page.text
        assert who in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        # a toggle without its CSRF token is refused and writes nothing
        change = {"purpose": "analytics", "recipient": "", "action": "withdraw"}
        assert client.post("/console/me", data=change).status_code == 403
        refused = client.post("/console/me", data={**change, "csrf_token": "forged"})
        assert refused.status_code == 403
        again = client.get("/console/me")
        assert "pending" not in again.text.split('id="preferences"', 1)[1].split("</table>")[0]
        # an operator's session is no subject's, and the subject's no operator's
        assert client.get("/console/overview").status_code == 401


def test_a_subject_id_with_markup_is_rendered_escaped(
    router_env: RouterEnv, console: ConsoleProcess
) -> None:
    router_env.consent(MARKUP, "GRANT", "analytics")
    link = LinkSigner(LINK_KEY).token(MARKUP, 600)
    with console.client() as client:
        http_login(client)
        page = client.get("/console/subject", params={"id": MARKUP})
        assert page.status_code == 200, page.text
        assert "<script>" not in page.text
        assert "<img src=x" not in page.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
        assert "&amp;amp;" in page.text  # the id's own "&amp;" escaped once more
        opened = client.get("/console/me", params={"t": link})
        assert opened.status_code == 303
        mine = client.get("/console/me")
        assert mine.status_code == 200
        assert "<script>" not in mine.text
        assert "&lt;script&gt;" in mine.text
