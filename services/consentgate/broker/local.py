"""The local development broker: a real single-node Apache Kafka (KRaft) run from its jars.

State lives in ``<state_dir>/broker``: ``data/`` (formatted once), ``logs/``, ``broker.pid``
and ``broker.json`` (version, ports). Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from consentgate.broker import config, jars, prereqs
from consentgate.broker.process import alive
from consentgate.errors import BrokerError, BrokerSetupError
from consentgate.settings import Settings

__all__ = ["BrokerStatus", "LocalBroker"]

log = logging.getLogger(__name__)

# Brokers this process started, so that stop() reaps them and no Popen is collected alive.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    bootstrap: str
    pid: int | None
    version: str
    state_dir: Path


class LocalBroker:
    """Start, stop and inspect the local broker."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.root = self.settings.state_dir / "broker"
        self.data = self.root / "data"
        self.logs = self.root / "logs"
        self.pid_file = self.root / "broker.pid"
        self.port = self.settings.broker_port
        self.controller_port = self.settings.broker_controller_port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.logs / "server.log"

    # -- inspection -------------------------------------------------------------------
    def pid(self) -> int | None:
        """The pid of our running broker, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ProcessLookupError):
            self.pid_file.unlink(missing_ok=True)
            return None
        if b"kafka.Kafka" not in cmdline:
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(
            running=pid is not None and self.answers(timeout=5.0),
            bootstrap=self.bootstrap,
            pid=pid,
            version=jars.kafka_version(),
            state_dir=self.root,
        )

    def answers(self, timeout: float = 5.0) -> bool:
        """True when an AdminClient metadata call succeeds."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        try:
            admin.list_topics(timeout=timeout)
        except Exception:  # noqa: BLE001 - any failure means "not answering"
            return False
        return True

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> bool:
        """Start the broker; returns False when it was already running."""
        if self.pid() is not None:
            if self.answers():
                return False
            raise BrokerError(
                f"broker pid {self.pid()} is alive but does not answer; "
                "try `consentgate broker stop`"
            )
        java = prereqs.find_java(self.settings.java_home)
        prereqs.java_major(java)
        for port in (self.port, self.controller_port):
            if prereqs.port_in_use(port):
                raise BrokerSetupError(
                    f"port 127.0.0.1:{port} is taken by another process; stop it or set "
                    "CONSENTGATE_BROKER_PORT / CONSENTGATE_BROKER_CONTROLLER_PORT"
                )
        libs = jars.ensure_jars()
        self._write_config()
        self._format_once(java, libs)
        self._launch(java, libs)
        self._wait_ready(timeout)
        return True

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop gracefully (SIGTERM, then SIGKILL after ``timeout``); False if not running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                break
            time.sleep(0.2)
        else:
            log.warning("broker pid %d ignored SIGTERM for %.0f s: killing it", pid, timeout)
            os.kill(pid, signal.SIGKILL)
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            child.wait(timeout=30)
        self.pid_file.unlink(missing_ok=True)
        return True

    # -- internals ----------------------------------------------------------------------
    def _write_config(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.root / "server.properties").write_text(
            config.server_properties(self.data, self.port, self.controller_port),
            encoding="utf-8",
        )
        (self.root / "log4j2.properties").write_text(
            config.log4j2_properties(self.log_file), encoding="utf-8"
        )

    def _format_once(self, java: Path, libs: Path) -> None:
        meta = self.data / "meta.properties"
        if meta.exists():
            text = meta.read_text(encoding="utf-8", errors="replace")
            if "cluster.id" not in text or "node.id=1" not in text:
                raise BrokerSetupError(
                    f"corrupt state folder {self.data}: meta.properties is unreadable; "
                    f"remove {self.root} to start afresh (all local topics are lost)"
                )
            return
        if self.data.exists() and any(self.data.iterdir()):
            raise BrokerSetupError(
                f"corrupt state folder {self.data}: it holds files but no meta.properties; "
                f"remove {self.root} to start afresh"
            )
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        proc = subprocess.run(
            [
                *self._java_cmd(java, libs),
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(self.root / "server.properties"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise BrokerError(f"formatting {self.data} failed:\n{proc.stdout}{proc.stderr}")
        (self.root / "broker.json").write_text(
            json.dumps({"cluster_id": cluster_id, "version": jars.kafka_version()}),
            encoding="utf-8",
        )

    def _java_cmd(self, java: Path, libs: Path) -> list[str]:
        return [
            str(java),
            f"-Xms{self.settings.broker_heap}",
            f"-Xmx{self.settings.broker_heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
        ]

    def _launch(self, java: Path, libs: Path) -> None:
        out = (self.logs / "stdout.log").open("ab")
        proc = subprocess.Popen(
            [*self._java_cmd(java, libs), "kafka.Kafka", str(self.root / "server.properties")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        self.pid_file.write_text(str(proc.pid), encoding="utf-8")
        _CHILDREN[proc.pid] = proc
        self._proc = proc

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                _CHILDREN.pop(self._proc.pid, None)
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"the broker exited with code {self._proc.returncode}:\n{self.tail(20)}"
                )
            if self.answers(timeout=2.0):
                return
            time.sleep(0.3)
        self.stop(timeout=10)
        raise BrokerError(f"the broker did not answer within {timeout:.0f} s:\n{self.tail(20)}")

    def tail(self, lines: int = 50) -> str:
        """The last lines of the broker's log (and its stdout, where the JVM complains)."""
        chunks = []
        for path in (self.log_file, self.logs / "stdout.log"):
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()
                chunks.append("\n".join(text[-lines:]))
        return "\n".join(c for c in chunks if c)
