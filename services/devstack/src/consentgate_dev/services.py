"""The product's services as child processes: the one launcher tests, benchmarks and the demo use.

A :class:`ServiceProcess` is ``python -m consentgate ARGS`` (the router, the consent fold, the
consent API) with its output in a log file, readiness by its ``/readyz``, its ``/metrics``
scraped, and a stop by signal (SIGKILL after a timeout). Children still running when the
interpreter exits are stopped then, so an interrupted benchmark leaves no router behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["ServiceError", "ServiceProcess", "scrape"]

_RUNNING: set[ServiceProcess] = set()


class ServiceError(RuntimeError):
    """A service exited early or did not become ready; the message ends with its log."""


class ServiceProcess:
    """``python [PYTHON_ARGS] -m consentgate ARGS`` with ``environ`` added to this process's
    environment (and ``unset`` taken out of it), stdout and stderr to ``log`` (appended, or
    truncated with ``append=False``); ``port`` is where it serves ``/readyz``. ``program``
    replaces the whole command line (another version of the router, for a benchmark)."""

    name = "service"

    def __init__(
        self,
        args: list[str],
        environ: dict[str, str],
        log: Path,
        port: int,
        *,
        append: bool = True,
        unset: tuple[str, ...] = (),
        python_args: tuple[str, ...] = (),
        program: list[str] | None = None,
    ) -> None:
        self.log = log
        self.port = port
        self.ready = False  # /readyz answered 200 once
        env = {**os.environ, **environ}
        for name in unset:
            env.pop(name, None)
        self._log = log.open("ab" if append else "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            program or [sys.executable, *python_args, "-m", "consentgate", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        _RUNNING.add(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def readyz(self) -> dict[str, Any] | None:
        """``/readyz``'s body when it answers 200 (a JSON object, else ``{"text": ...}``),
        else None."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as r:
                if r.status != 200:
                    return None
                body = r.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        self.ready = True
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
        return {"text": body.decode(errors="replace")}

    def wait_ready(self, timeout: float = 90.0, every: float = 0.3) -> dict[str, Any]:
        """Until ``/readyz`` answers 200; its body. ServiceError if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            body = self.readyz()
            if body is not None:
                return body
            time.sleep(every)
        raise ServiceError(f"{self.name} not ready in {timeout:.0f} s:\n{self.tail()}")

    def metrics(self) -> dict[str, float]:
        """``/metrics`` summed per sample name (labels dropped); empty if unreachable."""
        return scrape(self.port)

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Signal it, wait ``timeout`` s, then SIGKILL; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        _RUNNING.discard(self)
        return self.proc.returncode


def scrape(port: int) -> dict[str, float]:
    """``/metrics`` on ``port`` summed per sample name (labels dropped); empty if unreachable."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            sample, _, value = line.rpartition(" ")
            name = sample.split("{", 1)[0]
            with contextlib.suppress(ValueError):
                out[name] = out.get(name, 0.0) + float(value)
    return out


@atexit.register
def _stop_all() -> None:
    for service in list(_RUNNING):
        with contextlib.suppress(Exception):
            service.stop(timeout=15)
