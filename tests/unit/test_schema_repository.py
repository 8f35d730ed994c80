"""The schema repository: loading, cross-file named types, fingerprints per the Avro spec."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import avro.io
import avro.schema
import fastavro
import pytest

from consentgate.errors import SchemaError
from consentgate.models.events import BrowsingEvent
from consentgate.serde import SchemaRepository, Serde, default_schemas_dir
from consentgate.serde.fingerprint import crc64_avro, fingerprint_int, parsing_canonical_form

pytestmark = pytest.mark.unit

REPOSITORY = SchemaRepository.load()
MINE = {
    "BrowsingEvent": {"subject_id", "session_id", "search_query", "ip_address"},
    "DerivedScore": {"subject_id"},
    "Evidence": set(),
    "BrowsingSinkRecord": {"session_id", "search_query", "ip_address", "subject_key"},
    "ScoreSinkRecord": {"subject_key"},
    "DecisionRecord": {"subject_id"},
    "ProvisionRecord": {"subject_id", "subject_key"},
    "DeadLetter": {"raw_key", "raw_value"},
}

# Apache Avro's published vectors (share/test/data/schema-tests.txt): input, canonical, fp64.
SPEC_VECTORS = [
    ('"null"', '"null"', 7195948357588979594),
    ('{"type":"null"}', '"null"', 7195948357588979594),
    ('"boolean"', '"boolean"', -6970731678124411036),
    ('"int"', '"int"', 8247732601305521295),
    ('"long"', '"long"', -3434872931120570953),
    ('"float"', '"float"', 5583340709985441680),
    ('"double"', '"double"', -8181574048448539266),
    ('"string"', '"string"', -8142146995180207161),
    ('["int","boolean"]', '["int","boolean"]', 5392556393470105090),
    (
        '{"type":"fixed","name":"foo","size":15}',
        '{"name":"foo","type":"fixed","size":15}',
        1756455273707447556,
    ),
    (
        '{"type":"record","name":"foo","fields":[{"name":"f1","type":"boolean"}]}',
        '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}',
        7843277075252814651,
    ),
    (
        '{"name":"foo","type":"record","fields":[]}',
        '{"name":"foo","type":"record","fields":[]}',
        -4824392279771201922,
    ),
    (
        '{"name":"PigValue","type":"record",'
        '"fields":[{"name":"value","type":["null","int","long","PigValue"]}]}',
        '{"name":"PigValue","type":"record",'
        '"fields":[{"name":"value","type":["null","int","long","PigValue"]}]}',
        -1759257747318642341,
    ),
]


def _rabin(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro spec's reference code writes it."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


@pytest.mark.parametrize(("schema", "canonical", "expected"), SPEC_VECTORS)
def test_fingerprints_match_the_spec_vectors(schema: str, canonical: str, expected: int) -> None:
    assert parsing_canonical_form(json.loads(schema)) == canonical
    fingerprint = crc64_avro(canonical)
    assert fingerprint_int(fingerprint) == expected
    assert fingerprint == _rabin(canonical.encode()).to_bytes(8, "little")


def test_every_loaded_version_has_the_spec_fingerprint() -> None:
    entries = [REPOSITORY.current(n) for n in REPOSITORY.names()]
    entries += [e for n in REPOSITORY.released_names() for e in REPOSITORY.history(n)]
    for entry in entries:
        assert entry.fingerprint == _rabin(entry.canonical.encode()).to_bytes(8, "little")
        assert REPOSITORY.by_fingerprint(entry.fingerprint) is not None


def test_contract_conventions() -> None:
    for name in REPOSITORY.names():
        entry = REPOSITORY.current(name)
        assert name.startswith("dev.consentgate.v1."), name
        assert entry.schema.get("doc"), f"{name} has no doc"
        raw = json.loads(entry.path.read_text())
        for field in raw["fields"]:
            assert field.get("doc"), f"{name}.{field['name']} has no doc"
            if isinstance(field["type"], list) and "null" in field["type"]:
                assert "default" in field, f"{name}.{field['name']}: nullable without default"
    for short, pii in MINE.items():
        fields = REPOSITORY.current(short).schema["fields"]
        assert {f["name"] for f in fields if f.get("pii")} == pii, short


def test_named_types_resolve_across_files() -> None:
    sink = REPOSITORY.current("BrowsingSinkRecord")
    assert '"name":"dev.consentgate.v1.Evidence"' in sink.text
    assert '"name":"dev.consentgate.v1.Device"' in sink.text
    fastavro.parse_schema(json.loads(sink.text))  # self-contained: parses on its own
    avro.schema.parse(sink.text)


def test_lookup_by_full_and_short_name() -> None:
    assert REPOSITORY.current("BrowsingEvent") is REPOSITORY.current(BrowsingEvent.avro_name)
    assert "BrowsingEvent" in REPOSITORY
    assert "Nope" not in REPOSITORY
    with pytest.raises(SchemaError, match="no schema named 'Nope'"):
        REPOSITORY.current("Nope")


def test_single_object_bytes_follow_the_spec_and_the_avro_package_reads_them() -> None:
    entry = REPOSITORY.current("BrowsingEvent")
    event = {
        "event_id": "6f1c1f8e-3c6a-4a8e-9a43-5d4c7c1e2b10",
        "subject_id": "s-1",
        "event_time": 1_700_000_000_123,
        "event_type": "JOB_VIEW",
        "job_id": "job-9",
        "gpc": True,
    }
    raw = Serde(REPOSITORY).encode(event, "BrowsingEvent")
    body = io.BytesIO()
    fastavro.schemaless_writer(body, entry.parsed, event)
    assert raw == b"\xc3\x01" + entry.fingerprint + body.getvalue()
    reader = avro.io.DatumReader(avro.schema.parse(entry.text))
    decoded = reader.read(avro.io.BinaryDecoder(io.BytesIO(raw[10:])))
    assert isinstance(decoded, dict)
    assert (decoded["subject_id"], decoded["job_id"], decoded["gpc"]) == ("s-1", "job-9", True)


def _write(directory: Path, name: str, schema: object) -> None:
    (directory / name).write_text(json.dumps(schema))


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"no \*\.avsc schemas"):
        SchemaRepository.load(tmp_path)
    record = {"type": "record", "name": "A", "namespace": "x", "fields": []}
    _write(tmp_path, "a.avsc", {**record, "fields": [{"name": "b", "type": "x.Missing"}]})
    with pytest.raises(SchemaError, match=r"a\.avsc: unknown type 'x\.Missing'"):
        SchemaRepository.load(tmp_path)
    _write(tmp_path, "a.avsc", record)
    _write(tmp_path, "b.avsc", record)
    with pytest.raises(SchemaError, match="defined more than once"):
        SchemaRepository.load(tmp_path)
    (tmp_path / "b.avsc").write_text("{not json")
    with pytest.raises(SchemaError, match=r"b\.avsc: cannot read schema"):
        SchemaRepository.load(tmp_path)


def test_schemas_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(default_schemas_dir() / "evidence.avsc", tmp_path)
    monkeypatch.setenv("CONSENTGATE_SCHEMAS_DIR", str(tmp_path))
    assert default_schemas_dir() == tmp_path
    assert SchemaRepository.load().names() == ["dev.consentgate.v1.Evidence"]
