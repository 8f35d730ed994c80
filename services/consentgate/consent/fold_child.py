"""The consent fold as a supervised child process of ``consentgate consent serve``.

``serve`` answers HTTP in its own process (uvicorn); the fold is a faust worker with its own
event loop, so it runs as ``consentgate consent fold`` in a child process. A fold that dies
(exit 70: a batch could not be committed, or killed by a signal) is restarted with a capped
backoff: that is always safe, since the fold fences its predecessor's transactions and
refolds from its last committed offset. A fold that refuses to start (exit 78: missing
topics, bad policy) is not retried; ``on_refused`` is called so that serve can stop too. A
fold that exits 0 was stopped on purpose (a signal: Ctrl-C reaches the whole process group)
and is not restarted either. The child shares serve's process group, so a group signal
reaches both; a serve killed with SIGKILL leaves its fold running (stop it the same way).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

__all__ = ["FoldChild", "fold_command"]

log = logging.getLogger(__name__)

EXIT_REFUSED = 78
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
STABLE_SECONDS = 60.0
"""A child that lived this long resets the backoff."""


def fold_command(
    *,
    policy: str,
    changes_topic: str,
    state_topic: str,
    dlq_topic: str,
    group: str,
    web_port: int,
) -> list[str]:
    """The argv of ``consentgate consent fold`` with the same interpreter."""
    return [
        sys.executable,
        *("-m", "consentgate", "consent", "fold", "--policy", policy),
        *("--changes-topic", changes_topic, "--state-topic", state_topic),
        *("--dlq-topic", dlq_topic, "--group", group, "--web-port", str(web_port)),
    ]


class FoldChild:
    """Runs ``command`` until ``stop()``, restarting it when it dies (not when it refuses)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        on_refused: Callable[[], None],
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = list(command)
        self.env = env if env is not None else dict(os.environ)
        self.on_refused = on_refused
        self.restarts = 0
        self.refused = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="fold-child", daemon=True)

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the child, SIGKILL after ``timeout``; its exit code (None if never ran)."""
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "consent fold (pid %d) ignored SIGTERM for %.0f s: killed", proc.pid, timeout
                )
                proc.kill()
                proc.wait()
        self._thread.join(timeout=5)
        return proc.returncode

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            if self._stopping.is_set():
                return None
            # stdout/stderr inherited: the fold logs where serve logs
            self._proc = subprocess.Popen(self.command, env=self.env)
            return self._proc

    def _supervise(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stopping.is_set():
            started = time.monotonic()
            proc = self._spawn()
            if proc is None:
                return
            log.info("consent fold started (pid %d)", proc.pid)
            code = proc.wait()
            if self._stopping.is_set():
                return
            if code == 0:
                log.info("consent fold stopped (exit 0): not restarted")
                return
            if code == EXIT_REFUSED:
                self.refused = True
                log.error("consent fold refused to start (exit 78): stopping")
                self.on_refused()
                return
            if time.monotonic() - started >= STABLE_SECONDS:
                backoff = BACKOFF_FIRST
            self.restarts += 1
            log.error("consent fold exited %d: restarting in %.0f s", code, backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, BACKOFF_MAX)
