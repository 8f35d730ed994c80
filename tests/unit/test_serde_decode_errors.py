"""Bad bytes of every kind give a located DecodeError carrying the raw bytes, and nothing else."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
    MockSchemaRegistryClient,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from consentgate.errors import DecodeError
from consentgate.models.events import BrowsingEvent, DerivedScore, EventType
from consentgate.serde import Decoded, RegistryUnavailableError, SchemaRepository, Serde

pytestmark = pytest.mark.unit

REPOSITORY = SchemaRepository.load()
BROWSING = "dev.consentgate.v1.BrowsingEvent"
WHERE: dict[str, Any] = {"topic": "events.browsing.raw.v1", "partition": 3, "offset": 42}
EVENT = BrowsingEvent(
    event_id=uuid.UUID(int=7),
    subject_id="subject-1",
    event_time=datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    event_type=EventType.SEARCH,
    search_query="data engineer tokyo",
    page_url="https://jobs.example/search",
)


def _registry_serde(name: str) -> Serde:
    return Serde(REPOSITORY, registry=SchemaRegistryClient.new_client({"url": f"mock://{name}"}))


EMBEDDED = Serde(REPOSITORY)
REGISTRY = _registry_serde("decode-errors")
SINGLE = EMBEDDED.encode(EVENT)
CONFLUENT = REGISTRY.encode(EVENT)


def _decode_error(serde: Serde, raw: Any, **where: Any) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        serde.decode(raw, **(where or WHERE))
    error = caught.value
    assert (error.topic, error.partition, error.offset) == tuple(WHERE.values())
    assert error.raw == (raw if isinstance(raw, bytes) else None)
    assert "events.browsing.raw.v1[3]@42" in str(error)
    return error


BAD_BYTES = {
    "empty": b"",
    "json": b'{"event_id": "x"}',
    "lone-c3": b"\xc3",
    "magic-only": b"\xc3\x01",
    "short-fingerprint": b"\xc3\x01" + b"\x01" * 7,
    "header-only": SINGLE[:10],
    "wrong-second-magic": b"\xc3\x02" + SINGLE[2:],
    "unknown-fingerprint": b"\xc3\x01" + b"\xff" * 8 + SINGLE[10:],
    "garbage-body": SINGLE[:10] + b"\xff" * 20,
    "trailing-byte": SINGLE + b"\x00",
    "invalid-uuid": SINGLE[:10] + b"\x06abc" + SINGLE[11 + 36 :],
    "invalid-utf8": SINGLE[:47] + b"\x04\xff\xfe" + SINGLE[57:],
    "other-record-body": SINGLE[:10]
    + EMBEDDED.encode(
        {"source_topic": "t", "source_partition": 1, "source_offset": 2, "error_type": "e",
         "reason": "r", "stage": "decode", "failed_at": EVENT.event_time, "headers": []},
        "DeadLetter",
    )[10:],
}  # fmt: skip


@pytest.mark.parametrize("serde", [EMBEDDED, REGISTRY], ids=["embedded", "registry"])
@pytest.mark.parametrize("raw", BAD_BYTES.values(), ids=BAD_BYTES.keys())
def test_bad_bytes_give_decode_error(serde: Serde, raw: bytes) -> None:
    _decode_error(serde, raw)


@pytest.mark.parametrize("raw", [None, "text", 12], ids=["none", "str", "int"])
def test_non_bytes_give_decode_error(raw: Any) -> None:
    _decode_error(EMBEDDED, raw)


def test_reasons_say_what_is_wrong() -> None:
    assert "empty" in _decode_error(EMBEDDED, b"").reason
    assert (
        "unknown schema fingerprint ffffffffffffffff"
        in _decode_error(EMBEDDED, BAD_BYTES["unknown-fingerprint"]).reason
    )
    assert "1 trailing bytes" in _decode_error(EMBEDDED, BAD_BYTES["trailing-byte"]).reason
    assert "needs a schema registry" in _decode_error(EMBEDDED, CONFLUENT).reason
    assert "unknown framing" in _decode_error(EMBEDDED, b"\x01abc").reason


@pytest.mark.parametrize("raw", [SINGLE, CONFLUENT], ids=["single-object", "confluent"])
def test_every_truncation_is_a_decode_error(raw: bytes) -> None:
    for size in range(len(raw)):
        _decode_error(REGISTRY, raw[:size])


def test_confluent_errors() -> None:
    assert "trailing" in _decode_error(REGISTRY, CONFLUENT + b"\x00").reason
    assert "not in the registry" in _decode_error(_registry_serde("empty"), CONFLUENT).reason
    client = MockSchemaRegistryClient({"url": "mock://foreign"})
    other = '{"type":"record","name":"Thing","namespace":"other","fields":[]}'
    schema_id = client.register_schema("other.Thing", Schema(other, "AVRO"))
    foreign = Serde(REPOSITORY, registry=client)
    raw = b"\x00" + schema_id.to_bytes(4, "big") + b"\x00"
    assert "other.Thing, which is not in" in _decode_error(foreign, raw).reason


class _DownRegistry(MockSchemaRegistryClient):
    def get_schema(self, schema_id: int, *args: Any, **kwargs: Any) -> Schema:
        raise ConnectionError("connection refused")


def test_registry_outage_is_a_retriable_decode_error() -> None:
    serde = Serde(REPOSITORY, registry=_DownRegistry({"url": "mock://down"}))
    error = _decode_error(serde, CONFLUENT)
    assert isinstance(error, RegistryUnavailableError)
    assert "connection refused" in error.reason


def test_model_validation_failures_are_decode_errors() -> None:
    raw = EMBEDDED.encode({**EVENT.to_avro(), "subject_id": ""}, BROWSING)
    with pytest.raises(DecodeError, match=r"subject_id.*got ''") as caught:
        EMBEDDED.decode_model(raw, BrowsingEvent, **WHERE)
    assert caught.value.raw == raw
    assert caught.value.offset == 42
    with pytest.raises(DecodeError, match=r"expected a dev\.consentgate\.v1\.DerivedScore"):
        EMBEDDED.decode_model(SINGLE, DerivedScore, **WHERE)


def test_good_bytes_in_any_buffer_decode() -> None:
    for serde, raw in ((EMBEDDED, SINGLE), (REGISTRY, CONFLUENT), (REGISTRY, SINGLE)):
        for buffer in (raw, bytearray(raw), memoryview(raw)):
            assert serde.decode_model(buffer, BrowsingEvent) == EVENT


def _decode_or_error(serde: Serde, raw: bytes) -> None:
    try:
        result = serde.decode(raw, **WHERE)
    except DecodeError as error:
        assert error.raw == raw
        assert error.offset == 42
    else:
        assert isinstance(result, Decoded)


_PREFIXES = st.sampled_from(
    [b"", b"\x00", b"\x00\x00\x00\x00\x01", b"\xc3\x01", SINGLE[:10], CONFLUENT[:5]]
    + [b"\xc3\x01" + REPOSITORY.current(n).fingerprint for n in REPOSITORY.names()]
)


@settings(max_examples=300, deadline=None)
@given(prefix=_PREFIXES, body=st.binary(max_size=64))
def test_fuzzed_bytes_never_raise_anything_else(prefix: bytes, body: bytes) -> None:
    _decode_or_error(EMBEDDED, prefix + body)
    _decode_or_error(REGISTRY, prefix + body)


@settings(max_examples=300, deadline=None)
@given(which=st.sampled_from([SINGLE, CONFLUENT]), data=st.data())
def test_mutated_encodings_never_raise_anything_else(which: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(which) - 1))
    byte = data.draw(st.integers(0, 255))
    _decode_or_error(REGISTRY, which[:position] + bytes([byte]) + which[position + 1 :])
