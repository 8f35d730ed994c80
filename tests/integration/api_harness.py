"""``consentgate consent serve`` under test: a subprocess on a :class:`ConsentEnv`'s topics
with known tokens, and an HTTP client for it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx

from tests.integration.consent_harness import ConsentEnv
from tests.integration.probe import free_port

__all__ = ["AUTH", "OPERATOR", "TOKEN", "ApiProcess"]

TOKEN = "it-client-token-0123456789"
OPERATOR = "it-operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class ApiProcess:
    """``consentgate consent serve`` as a subprocess, logging to ``workdir/api-N.log``: the
    API only (``--no-fold``; the env runs the fold), or with ``fold=True`` serve's own fold
    child (group ``<env's fold group>-serve``, its health port in ``fold_port``)."""

    def __init__(
        self, env: ConsentEnv, index: int, *, fold: bool = False, operator: bool = True
    ) -> None:
        self.port = free_port()
        self.fold_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = env.workdir / f"api-{index}.log"
        cmd = [
            sys.executable,
            "-m",
            "consentgate",
            "consent",
            "serve",
            "--port",
            str(self.port),
            "--policy",
            str(env.policy_path),
            "--changes-topic",
            env.changes,
            "--state-topic",
            env.state,
            *(
                ("--dlq-topic", env.dlq, "--fold-group", f"{env.fold_group}-serve")
                if fold
                else ("--no-fold",)
            ),
            *("--fold-web-port", str(self.fold_port)),
        ]
        environ = {
            **os.environ,
            "CONSENTGATE_BOOTSTRAP": env.bootstrap,
            "CONSENTGATE_API_TOKEN": TOKEN,
            "CONSENTGATE_API_OPERATOR_TOKEN": OPERATOR,
        }
        if not operator:  # the backdating path closed
            del environ["CONSENTGATE_API_OPERATOR_TOKEN"]
        self._log = self.log.open("ab")
        self.proc = subprocess.Popen(cmd, env=environ, stdout=self._log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, headers=AUTH, timeout=60.0)
        self.ready = False  # /readyz answered 200 once

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"API exited {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    self.ready = True
                    return
            time.sleep(0.3)
        raise AssertionError(f"API not ready in {timeout} s:\n{self.tail()}")

    def post(self, path: str, body: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        """POST, retrying a 503 with the same body (a retry with the same change id is safe)."""
        for _ in range(5):
            response = self.client.post(path, json=body, **kw)
            if response.status_code != 503:
                return response
            time.sleep(float(response.headers.get("Retry-After", "1")))
        return response

    def tail(self, lines: int = 80) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 60.0) -> int | None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode
