"""A ``consentgate`` command under test as a subprocess: its output in a log file, readiness
by its ``/readyz``, and a stop by signal (SIGKILL after a timeout)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["ServiceProcess"]


class ServiceProcess:
    """``python -m consentgate ARGS`` with ``environ`` added to this process's environment
    (and ``unset`` taken out of it), stdout and stderr to ``log`` (appended, or truncated with
    ``append=False``); ``port`` is where it serves ``/readyz``."""

    name = "process"

    def __init__(
        self,
        args: list[str],
        environ: dict[str, str],
        log: Path,
        port: int,
        *,
        append: bool = True,
        unset: tuple[str, ...] = (),
    ) -> None:
        self.log = log
        self.port = port
        self.ready = False  # /readyz answered 200 once
        env = {**os.environ, **environ}
        for name in unset:
            env.pop(name, None)
        self._log = log.open("ab" if append else "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "consentgate", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 90.0, every: float = 0.3) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as r:
                    if r.status == 200:
                        self.ready = True
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(every)
        raise AssertionError(f"{self.name} not ready in {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

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
        return self.proc.returncode
