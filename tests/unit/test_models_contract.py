"""The pydantic models mirror the schemas, and their errors name the field path and value."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from consentgate.errors import DecodeError, ValidationError
from consentgate.models._base import AvroModel
from consentgate.models.events import BrowsingEvent, DerivedScore
from consentgate.models.records import DeadLetter, DecisionRecord, ProvisionRecord
from consentgate.serde import SchemaRepository
from consentgate.serde.model_index import model_for, models_by_name

pytestmark = pytest.mark.unit

REPOSITORY = SchemaRepository.load()
T0 = datetime(2025, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)
EVENT: dict[str, Any] = {
    "event_id": str(uuid.UUID(int=5)),
    "subject_id": "s-1",
    "event_time": T0,
    "event_type": "PAGE_VIEW",
}
DECISION: dict[str, Any] = {
    "event_id": uuid.UUID(int=5),
    "source_topic": "events.browsing.raw.v1",
    "source_partition": 0,
    "source_offset": 10,
    "subject_id": "s-1",
    "event_time": T0,
    "decided_at": T0,
    "policy_version": "p1",
    "outcomes": [{"sink": "analytics", "allowed": True, "reason": "allowed"}],
}


def _records(schema: Any) -> list[dict[str, Any]]:
    """Every record definition inside a self-contained schema."""
    if isinstance(schema, list):
        return [r for branch in schema for r in _records(branch)]
    if not isinstance(schema, dict):
        return []
    found = [schema] if schema.get("type") == "record" else []
    for child in (schema.get("type"), schema.get("items"), schema.get("values")):
        found += _records(child)
    for field in schema.get("fields", []):
        found += _records(field["type"])
    return found


def _model_records() -> list[tuple[type[AvroModel], dict[str, Any]]]:
    pairs = {}
    for name in REPOSITORY.names():
        for record in _records(REPOSITORY.current(name).schema):
            model = model_for(record["name"])
            if model is not None:
                pairs[record["name"]] = (model, record)
    return [pairs[n] for n in sorted(pairs)]


@pytest.mark.parametrize(
    ("model", "record"), _model_records(), ids=[m.__name__ for m, _ in _model_records()]
)
def test_model_fields_are_the_schema_fields(model: type[AvroModel], record: dict[str, Any]) -> None:
    assert set(model.model_fields) == {f["name"] for f in record["fields"]}
    for field in record["fields"]:
        if isinstance(field["type"], list) and "null" in field["type"]:
            assert not model.model_fields[field["name"]].is_required(), field["name"]


def test_every_record_of_this_issue_has_a_model() -> None:
    shorts = ["BrowsingEvent", "Device", "DerivedScore", "Evidence", "BrowsingSinkRecord"]
    shorts += ["ScoreSinkRecord", "DecisionRecord", "SinkOutcome", "ProvisionRecord"]
    for short in [*shorts, "DeadLetter", "Header"]:
        assert f"dev.consentgate.v1.{short}" in models_by_name(), short


@pytest.mark.parametrize(
    ("model", "data", "path", "value"),
    [
        (BrowsingEvent, {**EVENT, "subject_id": ""}, "subject_id", ""),
        (BrowsingEvent, {**EVENT, "event_id": "nope"}, "event_id", "nope"),
        (BrowsingEvent, {**EVENT, "event_time": datetime(2025, 1, 1)}, "event_time", None),
        (BrowsingEvent, {**EVENT, "event_type": "CLICK"}, "event_type", "CLICK"),
        (BrowsingEvent, {**EVENT, "device": {"os": 3}}, "device.os", 3),
        (BrowsingEvent, {**EVENT, "extra": 1}, "extra", 1),
        (DecisionRecord, {**DECISION, "source_partition": -1}, "source_partition", -1),
        (
            DecisionRecord,
            {**DECISION, "outcomes": [{"sink": "", "allowed": True, "reason": "allowed"}]},
            "outcomes.0.sink",
            "",
        ),
    ],
)
def test_validation_errors_name_the_path_and_value(
    model: type[AvroModel], data: dict[str, Any], path: str, value: Any
) -> None:
    with pytest.raises(ValidationError) as caught:
        model.from_avro(data)
    assert caught.value.path == path
    assert f"{model.__name__}: {path}:" in str(caught.value)
    if value is not None:
        assert caught.value.value == value
        assert repr(value) in str(caught.value)


def test_scores_are_finite_and_windows_ordered() -> None:
    score = {**EVENT, "score_type": "offer_decline_probability", "model_version": "m1"}
    score.pop("event_type")
    assert DerivedScore.from_avro({**score, "score": 1.7}).score == 1.7
    with pytest.raises(ValidationError, match="score"):
        DerivedScore.from_avro({**score, "score": float("inf")})
    window = {"features_window_start": T0, "features_window_end": T0 - timedelta(days=1)}
    with pytest.raises(ValidationError, match="after features_window_end"):
        DerivedScore.from_avro({**score, "score": 0.5, **window})


def test_timestamps_are_utc_milliseconds() -> None:
    tokyo = timezone(timedelta(hours=9))
    event = BrowsingEvent.from_avro(
        {**EVENT, "event_time": datetime(2025, 1, 1, 9, 0, 0, 123456, tokyo)}
    )
    assert event.event_time == datetime(2025, 1, 1, 0, 0, 0, 123000, UTC)
    assert event.event_time.utcoffset() == timedelta(0)


def test_provision_ids_are_deterministic() -> None:
    day = date(2025, 6, 1)
    first = ProvisionRecord.make_id("acme-corp", "s-1", "partner_acme", day)
    assert first == ProvisionRecord.make_id("acme-corp", "s-1", "partner_acme", day)
    assert len(first) == 64
    others = {
        ProvisionRecord.make_id("acme-corp", "s-2", "partner_acme", day),
        ProvisionRecord.make_id("acme-corp", "s-1", "partner_acme", day + timedelta(days=1)),
        ProvisionRecord.make_id("acme-cor", "ps-1", "partner_acme", day),
    }
    assert first not in others
    assert len(others) == 3


def test_dead_letter_from_a_decode_error() -> None:
    error = DecodeError("bad", raw=b"\x01").at("raw", 2, 99)
    letter = DeadLetter.for_decode_error(
        error, failed_at=T0, raw_key=b"s-1", headers=[("h", b"v"), ("n", None)]
    )
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("raw", 2, 99)
    assert (letter.raw_value, letter.reason, letter.stage) == (b"\x01", "bad", "decode")
    assert letter.error_type == "DecodeError"
    assert [(h.key, h.value) for h in letter.headers] == [("h", b"v"), ("n", None)]
    with pytest.raises(ValueError, match="topic, partition and offset"):
        DeadLetter.for_decode_error(DecodeError("bad", raw=None), failed_at=T0)
