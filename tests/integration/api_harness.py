"""``consentgate consent serve`` under test: a subprocess on a :class:`ConsentEnv`'s topics
with known tokens, and an HTTP client for it."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx

from consentgate_dev.services import ServiceProcess
from tests.integration.consent_harness import ConsentEnv
from tests.integration.probe import free_port

__all__ = ["AUTH", "OPERATOR", "TOKEN", "ApiProcess"]

TOKEN = "it-client-token-0123456789"
OPERATOR = "it-operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class ApiProcess(ServiceProcess):
    """``consentgate consent serve`` as a subprocess, logging to ``workdir/api-N.log``: the
    API only (``--no-fold``; the env runs the fold), or with ``fold=True`` serve's own fold
    child (group ``<env's fold group>-serve``, its health port in ``fold_port``)."""

    name = "API"

    def __init__(
        self, env: ConsentEnv, index: int, *, fold: bool = False, operator: bool = True
    ) -> None:
        port = free_port()
        self.fold_port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        environ = {
            "CONSENTGATE_BOOTSTRAP": env.bootstrap,
            "CONSENTGATE_API_TOKEN": TOKEN,
            "CONSENTGATE_API_OPERATOR_TOKEN": OPERATOR,
        }
        super().__init__(
            [
                *("consent", "serve", "--port", str(port), "--policy", str(env.policy_path)),
                *("--changes-topic", env.changes, "--state-topic", env.state),
                *(
                    ("--dlq-topic", env.dlq, "--fold-group", f"{env.fold_group}-serve")
                    if fold
                    else ("--no-fold",)
                ),
                *("--fold-web-port", str(self.fold_port)),
            ],
            environ,
            env.workdir / f"api-{index}.log",
            port,
            unset=() if operator else ("CONSENTGATE_API_OPERATOR_TOKEN",),  # no backdating
        )
        self.client = httpx.Client(base_url=self.url, headers=AUTH, timeout=60.0)

    def post(self, path: str, body: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        """POST, retrying a 503 with the same body (a retry with the same change id is safe)."""
        for _ in range(5):
            response = self.client.post(path, json=body, **kw)
            if response.status_code != 503:
                return response
            time.sleep(float(response.headers.get("Retry-After", "1")))
        return response

    def tail(self, lines: int = 80) -> str:
        return super().tail(lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        self.client.close()
        return super().stop(sig, timeout)
