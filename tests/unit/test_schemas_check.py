"""`consentgate schemas check` / `release`, and reading data written with released versions."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from consentgate.cli import main
from consentgate.serde import SchemaRepository, Serde, default_schemas_dir
from consentgate.serde.confluent import ConfluentCodec
from consentgate.serde.single_object import SingleObjectCodec

pytestmark = pytest.mark.unit

EVENT = {
    "event_id": uuid.UUID(int=1),
    "subject_id": "s-1",
    "event_time": datetime(2025, 5, 1, tzinfo=UTC),
    "event_type": "APPLY",
    "job_id": "job-1",
}


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    copy = tmp_path / "schemas"
    shutil.copytree(default_schemas_dir(), copy)
    return copy


def _edit_browsing_event(schemas: Path, edit: Any) -> None:
    path = schemas / "browsing_event.avsc"
    schema = json.loads(path.read_text())
    edit(schema)
    path.write_text(json.dumps(schema))


def _add_field(default: bool) -> Any:
    field: dict[str, Any] = {"name": "locale", "type": ["null", "string"], "doc": "UI locale."}
    if default:
        field["default"] = None
    return lambda schema: schema["fields"].append(field)


def test_check_passes_on_the_tree_and_lists_fingerprints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schemas", "check"]) == 0
    out = capsys.readouterr().out
    repository = SchemaRepository.load()
    for name in repository.names():
        assert name in out
        assert repository.current(name).fingerprint.hex() in out
    assert "passed" in out


def test_check_fails_on_a_field_without_default(
    schemas: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit_browsing_event(schemas, _add_field(default=False))
    assert main(["schemas", "check", "--schemas-dir", str(schemas)]) == 1
    err = capsys.readouterr().err
    assert "dev.consentgate.v1.BrowsingEvent: the current schema cannot read" in err
    assert "history/browsing_event/v1.avsc" in err
    assert "reader_field_missing_default_value" in err
    assert "locale" in err


def test_check_fails_on_a_removed_enum_symbol(
    schemas: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def drop_login(schema: dict[str, Any]) -> None:
        event_type = next(f for f in schema["fields"] if f["name"] == "event_type")
        event_type["type"]["symbols"].remove("LOGIN")

    _edit_browsing_event(schemas, drop_login)
    assert main(["schemas", "check", "--schemas-dir", str(schemas)]) == 1
    assert "missing_enum_symbols" in capsys.readouterr().err


def test_check_fails_on_a_removed_schema(schemas: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (schemas / "dead_letter.avsc").unlink()
    assert main(["schemas", "check", "--schemas-dir", str(schemas)]) == 1
    assert "DeadLetter: " in capsys.readouterr().err


def test_release_snapshots_only_changed_schemas(
    schemas: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for released in schemas.glob("history/consent_*"):
        shutil.rmtree(released)  # consent schemas may or may not be released yet
    assert main(["schemas", "release", "--schemas-dir", str(schemas)]) == 0
    capsys.readouterr()
    assert main(["schemas", "release", "--schemas-dir", str(schemas)]) == 0
    assert "nothing to release" in capsys.readouterr().out
    _edit_browsing_event(schemas, _add_field(default=True))
    assert main(["schemas", "release", "--schemas-dir", str(schemas)]) == 0
    assert "history/browsing_event/v2.avsc" in capsys.readouterr().out
    repository = SchemaRepository.load(schemas)
    assert [e.version for e in repository.history("dev.consentgate.v1.BrowsingEvent")] == [1, 2]
    assert main(["schemas", "check", "--schemas-dir", str(schemas)]) == 0


def test_data_written_with_a_released_version_reads_as_the_current_one(schemas: Path) -> None:
    _edit_browsing_event(schemas, _add_field(default=True))
    repository = SchemaRepository.load(schemas)
    (v1,) = repository.history("dev.consentgate.v1.BrowsingEvent")
    current = repository.current("BrowsingEvent")
    assert v1.fingerprint != current.fingerprint
    client = SchemaRegistryClient.new_client({"url": "mock://evolution"})
    serde = Serde(repository, registry=client)
    old_bytes = [
        SingleObjectCodec(repository).encode(v1, EVENT),
        ConfluentCodec(repository, client, auto_register=True).encode(v1, EVENT),
    ]
    for raw in old_bytes:
        name, value = serde.decode(raw)
        assert name == current.name
        assert value["locale"] is None
        assert value["job_id"] == "job-1"
