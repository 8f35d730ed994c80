"""Registry mode against a real Confluent-compatible registry (local Apicurio, or
``CONSENTGATE_SCHEMA_REGISTRY_URL``), through a real Kafka topic."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentgate.serde import SchemaRepository, Serde
from tests.conftest import TopicFactory
from tests.kafka_helpers import consume_all, produce
from tests.unit.avro_strategies import datums

pytestmark = pytest.mark.integration

REPO = SchemaRepository.load()


@pytest.fixture(scope="module")
def registry(schema_registry_url: str) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": schema_registry_url}) as client:
        yield client


@pytest.mark.parametrize("name", REPO.names())
def test_every_schema_round_trips_through_the_real_registry(
    registry: SchemaRegistryClient, name: str
) -> None:
    serde = Serde(REPO, registry=registry)
    local = Serde(REPO)

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def check(data: st.DataObject) -> None:
        datum = data.draw(datums(REPO.current(name).parsed))
        raw = serde.encode(datum, name)
        assert raw[0] == 0  # Confluent wire format: magic 0 + 4-byte schema id
        decoded = serde.decode(raw)
        assert decoded.name == REPO.current(name).name
        assert decoded.value == datum
        # the single-object form of the same datum decodes to the same value
        assert local.decode(local.encode(datum, name)).value == datum

    check()


def test_registry_records_travel_through_kafka(
    registry: SchemaRegistryClient, kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    serde = Serde(REPO, registry=registry)
    topic = topic_factory(partitions=3)
    events = [
        {
            "event_id": uuid.uuid4(),
            "subject_id": f"s-{i}",
            "event_time": datetime(2026, 11, 26, 12, 0, i % 60, tzinfo=UTC),
            "event_type": "JOB_VIEW",
            "job_id": f"job-{i}",
        }
        for i in range(50)
    ]
    produce(
        kafka_bootstrap,
        topic,
        ((e["subject_id"].encode(), serde.encode(e, "BrowsingEvent")) for e in events),
    )
    got = consume_all(kafka_bootstrap, topic, expected=len(events))
    decoded = [
        serde.decode(m.value(), topic=m.topic(), partition=m.partition(), offset=m.offset()).value
        for m in got
    ]
    assert sorted(d["event_id"] for d in decoded) == sorted(e["event_id"] for e in events)


def test_registry_rejects_an_incompatible_version(registry: SchemaRegistryClient) -> None:
    subject = f"compat-{uuid.uuid4().hex[:8]}"
    registry.set_compatibility(subject_name=subject, level="BACKWARD")
    v1 = '{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}'
    bad = (
        '{"type":"record","name":"R","fields":[{"name":"a","type":"string"},'
        '{"name":"b","type":"string"}]}'
    )
    good = (
        '{"type":"record","name":"R","fields":[{"name":"a","type":"string"},'
        '{"name":"b","type":"string","default":""}]}'
    )
    registry.register_schema(subject, Schema(v1, "AVRO"))
    with pytest.raises(SchemaRegistryError) as info:
        registry.register_schema(subject, Schema(bad, "AVRO"))
    assert info.value.http_status_code == 409
    registry.register_schema(subject, Schema(good, "AVRO"))
