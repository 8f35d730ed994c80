"""Shared fixtures: one Kafka cluster per session, a fresh topic and group per test.

The cluster comes from ``consentgate_dev.cluster.open_cluster``: ``CONSENTGATE_BOOTSTRAP`` if
set, else testcontainers when a Docker engine answers, else the local JVM broker (started
here and stopped at the end of the session if it was not already running).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from consentgate.settings import Settings
from consentgate_dev.broker.registry import start_registry, stop_registry
from consentgate_dev.cluster import Cluster, open_cluster
from consentgate_dev.errors import BrokerSetupError


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[Cluster]:
    cluster = open_cluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_cluster: Cluster) -> str:
    return kafka_cluster.bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


TopicFactory = Callable[..., str]


@pytest.fixture
def topic_factory(kafka_admin: AdminClient) -> Iterator[TopicFactory]:
    """Create uniquely named topics; they are deleted when the test ends."""
    created: list[str] = []

    def make(partitions: int = 1, config: dict[str, str] | None = None, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        futures = kafka_admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
            operation_timeout=30,
        )
        futures[name].result(timeout=30)
        created.append(name)
        return name

    yield make
    if created:
        for future in kafka_admin.delete_topics(created, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # best-effort cleanup
                future.result(timeout=30)


@pytest.fixture
def group_id() -> str:
    return f"cg-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def schema_registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Confluent-compatible registry: ``CONSENTGATE_SCHEMA_REGISTRY_URL`` if set, else
    a local Apicurio Registry started for the session (skipped, with the reason, when it
    cannot run here, e.g. no Java 21+)."""
    configured = Settings().schema_registry_url
    if configured:
        yield configured
        return
    state = tmp_path_factory.mktemp("registry")
    try:
        proc = start_registry(state, port=0)
    except BrokerSetupError as exc:
        pytest.skip(f"no local schema registry: {exc}")
    try:
        yield proc.url
    finally:
        stop_registry(state)
