"""The Serde facade: public API, formats chosen, encode errors, settings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
    MockSchemaRegistryClient,
)

import consentgate.serde
from consentgate.errors import SchemaError, ValidationError
from consentgate.models.events import BrowsingEvent, Device, EventType
from consentgate.models.records import DeadLetter
from consentgate.serde import SchemaRepository, Serde, SerdeSettings, WireFormat
from consentgate.serde.settings import registry_client_conf
from consentgate.settings import Settings

pytestmark = pytest.mark.unit

REPOSITORY = SchemaRepository.load()
EVENT = BrowsingEvent(
    event_id=uuid.UUID(int=3),
    subject_id="s-1",
    event_time=datetime(2025, 2, 1, tzinfo=UTC),
    event_type=EventType.COMPANY_VIEW,
    company_id="c-1",
    device=Device(os="linux"),
)
LETTER = {
    "source_topic": "t",
    "source_partition": 0,
    "source_offset": 1,
    "error_type": "DecodeError",
    "reason": "r",
    "stage": "decode",
    "failed_at": datetime(2025, 2, 1, tzinfo=UTC),
}


def test_public_api_is_small_sorted_and_real() -> None:
    names = consentgate.serde.__all__
    assert names == sorted(names)
    assert set(names) == {
        "Decoded",
        "RegistryUnavailableError",
        "SchemaEntry",
        "SchemaRepository",
        "Serde",
        "SerdeSettings",
        "WireFormat",
        "default_schemas_dir",
    }
    for name in names:
        assert getattr(consentgate.serde, name) is not None


def test_format_follows_the_registry_setting() -> None:
    embedded = Serde.from_settings(SerdeSettings(schema_registry_url=None))
    assert embedded.default_format is WireFormat.SINGLE_OBJECT
    registry = Serde.from_settings(Settings(schema_registry_url="mock://api-settings"))
    assert registry.default_format is WireFormat.CONFLUENT
    raw = registry.encode(EVENT, wire_format=WireFormat.SINGLE_OBJECT)
    assert raw[:2] == b"\xc3\x01"
    assert registry.decode_model(raw) == EVENT
    assert registry.decode_model(registry.encode(EVENT)) == EVENT


def test_confluent_subject_is_the_record_full_name() -> None:
    client = SchemaRegistryClient.new_client({"url": "mock://api-subject"})
    raw = Serde(REPOSITORY, registry=client).encode(EVENT)
    registered = client.get_latest_version(BrowsingEvent.avro_name)
    assert raw[0] == 0
    assert int.from_bytes(raw[1:5], "big") == registered.schema_id


def test_dicts_may_leave_out_fields_with_defaults() -> None:
    serde = Serde(REPOSITORY)
    name, value = serde.decode(serde.encode(LETTER, "DeadLetter"))
    assert name == DeadLetter.avro_name
    assert value["headers"] == []
    assert value["raw_value"] is None


@pytest.mark.parametrize("registry", [False, True], ids=["embedded", "registry"])
def test_encode_errors_name_the_field(registry: bool) -> None:
    client = SchemaRegistryClient.new_client({"url": "mock://api-errors"}) if registry else None
    serde = Serde(REPOSITORY, registry=client)
    with pytest.raises(ValidationError, match="source_partition") as caught:
        serde.encode({**LETTER, "source_partition": "x"}, "DeadLetter")
    assert caught.value.path == "source_partition"
    assert caught.value.value == "x"
    with pytest.raises(ValidationError, match="unexpected"):
        serde.encode({**LETTER, "unexpected": 1}, "DeadLetter")
    with pytest.raises(ValidationError, match="error_type"):
        serde.encode({k: v for k, v in LETTER.items() if k != "error_type"}, "DeadLetter")


def test_encode_refuses_what_it_cannot_name() -> None:
    serde = Serde(REPOSITORY)
    with pytest.raises(SchemaError, match="no schema named 'Nope'"):
        serde.encode(LETTER, "Nope")
    with pytest.raises(SchemaError, match="needs the schema name"):
        serde.encode(LETTER)
    with pytest.raises(SchemaError, match="cannot be encoded as DeadLetter"):
        serde.encode(EVENT, "DeadLetter")
    with pytest.raises(SchemaError, match="needs a schema registry"):
        serde.encode(EVENT, wire_format=WireFormat.CONFLUENT)


class _DownRegistry(MockSchemaRegistryClient):
    def register_schema(self, *args: Any, **kwargs: Any) -> int:
        raise ConnectionError("connection refused")


def test_registry_trouble_on_encode_is_a_schema_error() -> None:
    serde = Serde(REPOSITORY, registry=_DownRegistry({"url": "mock://down"}))
    with pytest.raises(SchemaError, match=r"unreachable while registering.*connection refused"):
        serde.encode(EVENT)
    client = SchemaRegistryClient.new_client({"url": "mock://api-no-auto"})
    with pytest.raises(SchemaError, match=r"refused dev\.consentgate\.v1\.BrowsingEvent"):
        Serde(REPOSITORY, registry=client, auto_register=False).encode(EVENT)


def test_registry_client_conf() -> None:
    assert registry_client_conf(SerdeSettings(schema_registry_url=None)) is None
    settings = SerdeSettings(
        schema_registry_url="https://registry:8081",
        schema_registry_basic_auth=pydantic.SecretStr("user:secret"),
    )
    assert registry_client_conf(settings) == {
        "url": "https://registry:8081",
        "basic.auth.user.info": "user:secret",
    }
    assert "secret" not in repr(settings)
