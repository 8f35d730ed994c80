"""The local development broker: a real single-node Apache Kafka (KRaft) run from its jars.

State lives in ``<state_dir>/broker``: ``data/`` (formatted once), ``logs/``, ``broker.pid``
and ``broker.json`` (version, ports). Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from consentgate_dev import jvm
from consentgate_dev.broker import config, jars
from consentgate_dev.errors import BrokerError, BrokerSetupError
from consentgate_dev.settings import DevSettings

__all__ = ["BrokerStatus", "LocalBroker", "new_cluster_id"]

log = logging.getLogger(__name__)


def new_cluster_id() -> str:
    """A random cluster id: a type-4 UUID in URL-safe base64 (22 characters).

    Like Kafka's own ``Uuid.randomUuid``, it never starts with "-", which command-line
    parsers read as an option.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    bootstrap: str
    pid: int | None
    version: str
    state_dir: Path


class LocalBroker:
    """Start, stop and inspect the local broker."""

    def __init__(self, settings: DevSettings | None = None) -> None:
        self.settings = settings or DevSettings()
        self.root = self.settings.state_dir.absolute() / "broker"
        self.data = self.root / "data"
        self.logs = self.root / "logs"
        self.port = self.settings.broker_port
        self.controller_port = self.settings.broker_controller_port
        self.sasl_port = self.settings.broker_sasl_port
        self.tls = self._tls()
        self.daemon = jvm.Daemon(
            name="broker",
            pid_file=self.root / "broker.pid",
            log_file=self.logs / "stdout.log",
            tag=f"-Dconsentgate.broker={self.root}",
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _tls(self) -> config.TlsListener | None:
        s = self.settings
        if s.broker_tls_port is None:
            return None
        if s.broker_tls_keystore is None or s.broker_tls_key_password is None:
            raise BrokerSetupError(
                "CONSENTGATE_BROKER_TLS_PORT needs CONSENTGATE_BROKER_TLS_KEYSTORE (PEM: an "
                "encrypted PKCS#8 key and its certificate chain) and _TLS_KEY_PASSWORD"
            )
        return config.TlsListener(
            s.broker_tls_port,
            s.broker_tls_keystore.absolute(),
            s.broker_tls_key_password.get_secret_value(),
        )

    @property
    def tls_bootstrap(self) -> str | None:
        """The SASL_SSL listener's address, when the broker has one."""
        return None if self.tls is None else f"127.0.0.1:{self.tls.port}"

    @property
    def sasl_bootstrap(self) -> str | None:
        """The SASL/SCRAM listener's address, when the broker has one."""
        return None if self.sasl_port is None else f"127.0.0.1:{self.sasl_port}"

    @property
    def log_file(self) -> Path:
        return self.logs / "server.log"

    # -- inspection -------------------------------------------------------------------
    def pid(self) -> int | None:
        """The pid of our running broker, or None (a stale pid file is removed)."""
        return self.daemon.pid()

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
        pid = self.pid()
        if pid is not None:
            if self.answers():
                return False
            raise BrokerError(
                f"broker pid {pid} is alive but does not answer; try `consentgate broker stop`"
            )
        java = jvm.find_java(jvm.MIN_JAVA, self.settings.java_home)
        extra = [p for p in (self.sasl_port, self.tls and self.tls.port) if p]
        ports = (self.port, self.controller_port, *extra)
        for port in ports:
            if jvm.port_in_use(port):
                raise BrokerSetupError(
                    f"port 127.0.0.1:{port} is taken by another process; stop it or set "
                    "CONSENTGATE_BROKER_PORT / _CONTROLLER_PORT / _SASL_PORT"
                )
        libs = jars.ensure_jars()
        self._write_config()
        self._format_once(java, libs)
        self.daemon.launch(
            [*self._java_cmd(java, libs), "kafka.Kafka", str(self.root / "server.properties")]
        )
        self.daemon.wait_until(
            lambda: self.answers(timeout=2.0), timeout=timeout, describe=lambda: self.tail(20)
        )
        return True

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop gracefully (SIGTERM, then SIGKILL after ``timeout``); False if not running."""
        return self.daemon.stop(timeout)

    # -- internals ----------------------------------------------------------------------
    def _write_config(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.root / "server.properties").write_text(
            config.server_properties(
                self.data, self.port, self.controller_port, self.sasl_port, self.tls
            ),
            encoding="utf-8",
        )
        (self.root / "log4j2.properties").write_text(
            config.log4j2_properties(self.log_file), encoding="utf-8"
        )

    def _format_once(self, java: Path, libs: Path, cluster_id: str | None = None) -> None:
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
        cluster_id = cluster_id or new_cluster_id()
        proc = subprocess.run(
            [
                *self._java_cmd(java, libs),
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                f"--cluster-id={cluster_id}",  # attached: an id may not be read as an option
                f"--config={self.root / 'server.properties'}",
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
            self.daemon.tag,
            f"-Xms{self.settings.broker_heap}",
            f"-Xmx{self.settings.broker_heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
        ]

    def tail(self, lines: int = 50) -> str:
        """The last lines of the broker's log (and its stdout, where the JVM complains)."""
        chunks = []
        for path in (self.log_file, self.logs / "stdout.log"):
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()
                chunks.append("\n".join(text[-lines:]))
        return "\n".join(c for c in chunks if c)
