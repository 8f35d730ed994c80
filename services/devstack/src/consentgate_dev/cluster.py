"""One way to find a Kafka cluster, shared by tests, services and the demo.

Order: ``CONSENTGATE_BOOTSTRAP`` set → that cluster; else a reachable Docker engine →
testcontainers Kafka in KRaft mode; else the local JVM broker (``consentgate broker``).

``open_cluster()`` may start something (a container, the local broker) and stops what it
started on ``close()``. The product never calls it: its services read
``CONSENTGATE_BOOTSTRAP`` (``consentgate.cluster.resolve_bootstrap``) and fail with an
actionable message when it is unset.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from consentgate_dev.broker.local import LocalBroker
from consentgate_dev.settings import DevSettings

__all__ = ["Cluster", "docker_available", "open_cluster"]

log = logging.getLogger(__name__)

KAFKA_IMAGE = "apache/kafka:4.1.1"


@dataclass
class Cluster:
    """A cluster in use: its bootstrap address, what kind it is, and how to let it go."""

    bootstrap: str
    kind: str  # "external" | "testcontainers" | "local"
    _stop: Any = field(default=None, repr=False)

    def close(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def docker_available(timeout: float = 3.0) -> bool:
    """True when a Docker engine answers a ping (the client alone is not enough)."""
    if not _engine_socket_answers(timeout):
        log.info("no Docker engine reachable (no socket answers): using the local JVM broker")
        return False
    client = None
    try:
        import docker  # noqa: PLC0415 - optional, only the testcontainers path needs it

        # an explicit API version keeps from_env() itself from touching the socket
        client = docker.from_env(version="1.41", timeout=timeout)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        log.info("no Docker engine reachable (%s): using the local JVM broker", _first_line(exc))
        return False
    finally:
        if client is not None:
            client.close()
    return True


def _engine_socket_answers(timeout: float) -> bool:
    """Cheap pre-check without the docker library (which leaks a socket when it fails)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True  # tcp/ssh engines: let the docker client decide
    path = host.removeprefix("unix://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:160]


def _testcontainers() -> Cluster:
    from testcontainers.kafka import KafkaContainer  # noqa: PLC0415

    container = KafkaContainer(KAFKA_IMAGE).with_kraft()
    container.start()
    log.info("started testcontainers Kafka %s", KAFKA_IMAGE)
    return Cluster(container.get_bootstrap_server(), "testcontainers", container.stop)


def open_cluster(settings: DevSettings | None = None, *, use_docker: bool = True) -> Cluster:
    """Find or start a cluster; close the result to stop whatever was started for it."""
    settings = settings or DevSettings()
    if settings.bootstrap:
        return Cluster(settings.bootstrap, "external")
    if use_docker and docker_available():
        return _testcontainers()
    broker = LocalBroker(settings)
    started = broker.start()
    if started:
        log.info("started the local broker at %s", broker.bootstrap)
        return Cluster(broker.bootstrap, "local", broker.stop)
    log.info("using the running local broker at %s", broker.bootstrap)
    return Cluster(broker.bootstrap, "local")
