"""ConsentChange / ConsentTimeline: the per-change rules and the schema contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from consentgate.errors import ValidationError
from consentgate.models.consent import (
    ConsentAction,
    ConsentChange,
    ConsentMethod,
    ConsentTimeline,
    TimelineChange,
)
from consentgate.serde.repository import SchemaRepository

pytestmark = pytest.mark.unit

REPOSITORY = SchemaRepository.load()
WHEN = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
GRANT: dict[str, Any] = {
    "change_id": "g1",
    "subject_id": "s-1",
    "action": "GRANT",
    "purpose": "partner_sharing",
    "recipient": "acme-corp",
    "effective_time": WHEN,
    "recorded_time": WHEN,
    "method": "WEB_FORM",
}


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"action": "ERASE"}, "names neither purpose nor recipient"),
        ({"purpose": None}, "needs a purpose"),
        ({"action": "WITHDRAW", "expires_at": WHEN + timedelta(days=1)}, "only a GRANT"),
        ({"expires_at": WHEN}, "after effective_time"),
        ({"tcf_string": "CQ..."}, "only allowed with method TCF"),
        ({"purpose": "Partner Sharing"}, "purpose"),
        ({"recipient": "_first_party"}, "recipient"),
        ({"effective_time": datetime(2025, 4, 1, 9, 0)}, "effective_time"),  # naive
        ({"subject_id": ""}, "subject_id"),
    ],
)
def test_change_rules(update: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ConsentChange.from_avro({**GRANT, **update})


def test_valid_changes() -> None:
    erase = ConsentChange.from_avro(
        {**GRANT, "action": "ERASE", "purpose": None, "recipient": None}
    )
    assert erase.grant_key is None
    tcf = ConsentChange.from_avro({**GRANT, "method": "TCF", "tcf_string": "CQ..."})
    assert tcf.method is ConsentMethod.TCF and tcf.grant_key == ("partner_sharing", "acme-corp")


def test_times_are_utc_milliseconds() -> None:
    tokyo = datetime(2025, 4, 1, 18, 0, 0, 123456, tzinfo=timezone(timedelta(hours=9)))
    change = ConsentChange.from_avro({**GRANT, "effective_time": tokyo})
    assert change.effective_time == WHEN.replace(microsecond=123000)
    assert change.effective_time.tzinfo is UTC


def test_timeline_change_drops_and_restores_the_subject() -> None:
    change = ConsentChange.from_avro(GRANT)
    entry = TimelineChange.of(change)
    assert "subject_id" not in entry.model_dump()
    assert entry.for_subject("s-1") == change


@pytest.mark.parametrize(
    ("changes", "erased_at", "message"),
    [
        (["b", "a"], None, "sorted canonically"),
        (["a", "a"], None, "unique"),
        (["a", "erase"], None, "only one ERASE"),
        (["0-erase", "a"], None, "erased_at must be"),
    ],
)
def test_timeline_invariants(changes: list[str], erased_at: datetime | None, message: str) -> None:
    def entry(cid: str) -> dict[str, Any]:
        body = {k: v for k, v in GRANT.items() if k != "subject_id"}
        if cid.endswith("erase"):
            return {**body, "change_id": cid, "action": "ERASE", "purpose": None, "recipient": None}
        return {**body, "change_id": cid}

    with pytest.raises(ValidationError, match=message):
        ConsentTimeline.from_avro(
            {
                "subject_id": "s-1",
                "version": len(changes),
                "updated_at": WHEN,
                "erased_at": erased_at,
                "changes": [entry(c) for c in changes],
            }
        )


def fields(name: str) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in REPOSITORY.current(name).schema["fields"]}


@pytest.mark.parametrize(
    ("model", "name", "pii"),
    [
        (ConsentChange, "dev.consentgate.v1.ConsentChange", {"subject_id", "actor", "tcf_string"}),
        (ConsentTimeline, "dev.consentgate.v1.ConsentTimeline", {"subject_id"}),
    ],
)
def test_models_mirror_their_schemas(model: Any, name: str, pii: set[str]) -> None:
    schema = fields(name)
    assert model.avro_name == name
    assert set(model.model_fields) == set(schema)
    assert all(f.get("doc") for f in schema.values())
    assert {n for n, f in schema.items() if f.get("pii")} == pii


def test_enums_mirror_their_schemas() -> None:
    action = fields("dev.consentgate.v1.ConsentChange")["action"]["type"]
    method = fields("dev.consentgate.v1.ConsentChange")["method"]["type"]
    assert action["symbols"] == [a.value for a in ConsentAction]
    assert method["symbols"] == [m.value for m in ConsentMethod]
