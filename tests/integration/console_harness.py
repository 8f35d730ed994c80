"""The console under test: ``consentgate consent serve`` with the console's settings on a
:class:`RouterEnv`'s topics, a browser (Debian's chromium through Playwright, no browser
download) and axe-core (vendored under ``tests/assets/axe-core``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from consentgate.console.auth import hash_password
from consentgate_dev.screenshots import chromium_executable
from consentgate_dev.services import ServiceProcess
from tests.integration.api_harness import OPERATOR, TOKEN
from tests.integration.probe import free_port
from tests.integration.router_harness import MASTER_KEY, RouterEnv

__all__ = [
    "LINK_KEY",
    "PASSWORD",
    "SESSION_KEY",
    "USER",
    "ConsoleProcess",
    "axe_violations",
    "chromium_path",
    "cli",
    "http_login",
    "launch_browser",
]

USER = "ops"
PASSWORD = "console-password-0123456789"
SESSION_KEY = "it-console-session-key-0123456789abcdef"
LINK_KEY = "it-console-link-key-0123456789abcdefghij"
PASSWORD_HASH = hash_password(PASSWORD, n=2**12)  # the recommended setting, cheaper to check
AXE = Path(__file__).parents[1] / "assets" / "axe-core" / "axe.min.js"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def chromium_path() -> str | None:
    """The browser the tests drive: the one the demo's screenshots use."""
    return chromium_executable()


def console_environ(env: RouterEnv, base_url: str, **extra: str) -> dict[str, str]:
    plan = env.plan
    return {
        "CONSENTGATE_BOOTSTRAP": env.bootstrap,
        "CONSENTGATE_API_TOKEN": TOKEN,
        "CONSENTGATE_API_OPERATOR_TOKEN": OPERATOR,
        "CONSENTGATE_PSEUDONYM_MASTER_KEY": MASTER_KEY,
        "CONSENTGATE_CONSOLE_USER": USER,
        "CONSENTGATE_CONSOLE_PASSWORD_HASH": PASSWORD_HASH,
        "CONSENTGATE_CONSOLE_SESSION_KEY": SESSION_KEY,
        "CONSENTGATE_CONSOLE_LINK_KEY": LINK_KEY,
        "CONSENTGATE_CONSOLE_BASE_URL": base_url,
        "CONSENTGATE_CONSOLE_SECURE_COOKIES": "false",  # plain HTTP on 127.0.0.1
        "CONSENTGATE_CONSOLE_CACHE_SECONDS": "0",
        "CONSENTGATE_CONSOLE_FOLD_GROUP": env.consents.fold_group,
        "CONSENTGATE_ROUTER_TOPICS__CONSENT_CHANGES": plan.changes_topic,
        "CONSENTGATE_ROUTER_TOPICS__CONSENT_STATE": plan.state_topic,
        "CONSENTGATE_ROUTER_TOPICS__DECISIONS": plan.decisions_topic,
        "CONSENTGATE_ROUTER_TOPICS__PROVISIONS": plan.provisions_topic,
        "CONSENTGATE_ROUTER_TOPICS__DEAD_LETTERS": plan.dlq_topic,
        "CONSENTGATE_CONSOLE_REPLAY_REPORTS": str(env.workdir / "replays"),
        **extra,
    }


class ConsoleProcess(ServiceProcess):
    """``consentgate consent serve --no-fold`` with the console on, logging to
    ``workdir/console-N.log`` (the env's own fold folds)."""

    name = "console"

    def __init__(self, env: RouterEnv, index: int = 0, **extra: str) -> None:
        (env.workdir / "replays").mkdir(exist_ok=True)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.environ = console_environ(env, self.url, **extra)
        super().__init__(
            [
                *("consent", "serve", "--port", str(port), "--policy", str(env.policy_path)),
                *("--changes-topic", env.changes, "--state-topic", env.state, "--no-fold"),
            ],
            self.environ,
            env.workdir / f"console-{index}.log",
            port,
        )

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120.0, follow_redirects=False)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        return super().stop(sig, timeout)


def cli(env: dict[str, str], *args: str, timeout: float = 180.0) -> str:
    """``consentgate ARGS`` with ``env`` (stdout; AssertionError on a non-zero exit)."""
    done = subprocess.run(
        [sys.executable, "-m", "consentgate", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, (args, done.returncode, done.stderr[-3000:])
    return done.stdout


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html[:2000]
    return found.group(1)


def http_login(client: httpx.Client) -> None:
    """Log ``client`` in through the form (its cookies then hold the session)."""
    form = client.get("/console/login")
    assert form.status_code == 200, form.text
    answer = client.post(
        "/console/login",
        data={"user": USER, "password": PASSWORD, "csrf_token": csrf_of(form.text)},
    )
    assert answer.status_code == 303, (answer.status_code, answer.text)


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core's violations of ``page`` of the given impacts, one line each (the page's
    context must bypass CSP: the console's own forbids every script)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['impact']} {v['id']}: {v['help']} at "
        + json.dumps([n["target"] for n in v["nodes"]][:5])
        for v in result["violations"]
        if v.get("impact") in impacts
    ]


def launch_browser() -> Iterator[Any]:
    """A chromium browser for a fixture to yield (skips the test if there is none)."""
    path = chromium_path()
    if path is None:
        pytest.skip(
            "no chromium executable (apt-get install chromium, or set CONSENTGATE_CHROMIUM): "
            "the console's browser tests need one; playwright install is not used"
        )
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            launched.close()
