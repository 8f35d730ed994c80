"""decode(encode(x)) == x for every schema in schemas/, in both wire formats.

Strategies are built from each schema generically (tests/unit/avro_strategies.py), so a new
schema file is covered without touching this module.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentgate.errors import ValidationError
from consentgate.models._base import AvroModel
from consentgate.serde import SchemaRepository, Serde, WireFormat
from consentgate.serde.model_index import models_by_name
from tests.unit.avro_strategies import datums

pytestmark = pytest.mark.unit

REPOSITORY = SchemaRepository.load()
NAMES = REPOSITORY.names()
EMBEDDED = Serde(REPOSITORY)
REGISTRY = Serde(REPOSITORY, registry=SchemaRegistryClient.new_client({"url": "mock://roundtrip"}))
SERDES = {WireFormat.SINGLE_OBJECT: EMBEDDED, WireFormat.CONFLUENT: REGISTRY}
ROUNDTRIP = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Field values the models constrain beyond the Avro type, drawn so most examples validate.
MODEL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "purpose": st.from_regex(r"\A[a-z][a-z0-9_]{0,20}\Z"),
    "recipient": st.none() | st.from_regex(r"\A[a-z0-9][a-z0-9._-]{0,20}\Z"),
    "source_partition": st.integers(0, 2**31 - 1),
    "source_offset": st.integers(0, 2**63 - 1),
    "consent_version": st.none() | st.integers(0, 2**63 - 1),
    "version": st.integers(0, 2**63 - 1),
}


@pytest.mark.parametrize("wire_format", list(WireFormat))
@pytest.mark.parametrize("name", NAMES)
def test_every_schema_round_trips(name: str, wire_format: WireFormat) -> None:
    serde = SERDES[wire_format]

    @ROUNDTRIP
    @given(datums(REPOSITORY.current(name).schema))
    def check(value: dict[str, Any]) -> None:
        raw = serde.encode(value, name)
        if wire_format is WireFormat.SINGLE_OBJECT:
            assert raw[:2] == b"\xc3\x01"
        else:
            assert raw[0] == 0
        decoded = serde.decode(raw, topic="t", partition=0, offset=1)
        assert decoded.name == name
        assert decoded.value == value

    check()


def test_every_schema_is_covered() -> None:
    assert len(NAMES) >= 8
    assert "dev.consentgate.v1.BrowsingEvent" in NAMES


def _models() -> list[type[AvroModel]]:
    return [m for n, m in sorted(models_by_name().items()) if n in NAMES]


@pytest.mark.parametrize("wire_format", list(WireFormat))
@pytest.mark.parametrize("model", _models(), ids=lambda m: m.__name__)
def test_every_model_round_trips(model: type[AvroModel], wire_format: WireFormat) -> None:
    serde = SERDES[wire_format]
    schema = REPOSITORY.current(model.avro_name).schema
    strategy = datums(schema, nonempty_strings=True, finite=True, overrides=MODEL_FIELDS)
    validated = []

    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(strategy)
    def check(value: dict[str, Any]) -> None:
        try:
            record = model.from_avro(value)
        except ValidationError:
            return  # the model is stricter than the schema (cross-field rules): not a datum
        raw = serde.encode(record)
        assert serde.decode_model(raw, model) == record
        assert serde.decode_model(raw) == record
        validated.append(record)

    check()
    assert validated, f"no generated datum satisfied {model.__name__}"
