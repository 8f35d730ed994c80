"""``consentgate consent import``: parsing, the service's rules per row, the rejects file,
derived change ids and the summary; with a fake changelog (no Kafka)."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consentgate.cli import build_parser, main
from consentgate.consent.changelog import AppendError, ChangeLog, Receipt
from consentgate.consent.importer import (
    Importer,
    ImportSummary,
    ImportUsageError,
    derived_change_id,
    detect_format,
)
from consentgate.consent.service import ConsentService
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod
from tests.unit.policy_fixtures import POLICY

pytestmark = pytest.mark.unit

HEADER = (
    "subject_id,action,purpose,recipient,effective_time,expires_at,notice_version,change_id,"
    "backdate_reason\n"
)
SOON = (datetime.now(UTC) + timedelta(days=2)).isoformat()
LATER = (datetime.now(UTC) + timedelta(days=30)).isoformat()


class _LazyFuture(Future[Receipt]):
    """Acknowledged only when someone asks (so the fake can count what is in flight)."""

    def __init__(self, log: FakeChangeLog, change: ConsentChange) -> None:
        super().__init__()
        self._log = log
        self._change = change

    def result(self, timeout: float | None = None) -> Receipt:
        if not self.done():
            self._log.acknowledge(self, self._change)
        return super().result(timeout)


class FakeChangeLog(ChangeLog):
    """Records what is submitted; fails the change ids in ``fail``."""

    def __init__(self, fail: frozenset[str] = frozenset(), raise_on: frozenset[str] = frozenset()):
        self.topic = "fake.changes"
        self.submitted: list[ConsentChange] = []
        self.fail = fail
        self.raise_on = raise_on
        self.outstanding = 0
        self.max_outstanding = 0

    def submit(self, change: ConsentChange) -> Future[Receipt]:
        if change.change_id in self.raise_on:
            raise AppendError(f"consent change {change.change_id}: Local: Message size too large")
        self.submitted.append(change)
        self.outstanding += 1
        self.max_outstanding = max(self.max_outstanding, self.outstanding)
        return _LazyFuture(self, change)

    def acknowledge(self, future: Future[Receipt], change: ConsentChange) -> None:
        self.outstanding -= 1
        if change.change_id in self.fail:
            future.set_exception(
                AppendError(f"consent change {change.change_id}: Broker: Not enough replicas")
            )
        else:
            future.set_result(Receipt(change.change_id, change.subject_id, 0, 0))

    def close(self, timeout: float = 30.0) -> None:
        return None


def _importer(
    changelog: FakeChangeLog | None = None, max_in_flight: int = 50_000
) -> tuple[Importer, FakeChangeLog]:
    log = changelog or FakeChangeLog()
    service = ConsentService(POLICY, log)
    return Importer(service, actor="import:tester", max_in_flight=max_in_flight), log


def _run(
    tmp_path: Path, name: str, text: str | bytes, **kw: Any
) -> tuple[ImportSummary, FakeChangeLog, list[dict[str, Any]]]:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    fmt = kw.pop("fmt", None)
    importer, log = _importer(**kw)
    rejects = tmp_path / f"{name}.rejects.jsonl"
    summary = importer.run(path, rejects, fmt)
    lines = rejects.read_text(encoding="utf-8").splitlines()
    return summary, log, [json.loads(line) for line in lines]


def _sha(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


# -- accepted rows ----------------------------------------------------------------------------


def test_csv_rows_become_import_changes_through_the_service(tmp_path: Path) -> None:
    text = (
        HEADER + "s1,grant,analytics,,,,notice-7,,\n"
        f"s1,Withdraw,analytics,,{SOON},,,,\n"
        f"s2,GRANT,partner_sharing,acme-corp,{SOON},{LATER},,my-id-1,\n"
        "s3,erase,,,,,,,\n"
    )
    summary, log, rejects = _run(tmp_path, "a.csv", text)
    assert rejects == []
    assert summary.rows == 4
    assert summary.accepted == {"GRANT": 2, "WITHDRAW": 1, "ERASE": 1}
    assert summary.rejected_total == 0 and summary.exit_code == 0
    first, withdraw, grant, erase = log.submitted
    assert {c.method for c in log.submitted} == {ConsentMethod.IMPORT}
    assert {c.actor for c in log.submitted} == {"import:tester"}
    assert first.action is ConsentAction.GRANT and first.notice_version == "notice-7"
    assert first.effective_time == first.recorded_time  # no effective_time: when recorded
    assert withdraw.effective_time == datetime.fromisoformat(SOON).replace(
        microsecond=withdraw.effective_time.microsecond
    )
    assert grant.change_id == "my-id-1" and grant.recipient == "acme-corp"
    assert grant.expires_at is not None
    assert erase.action is ConsentAction.ERASE and erase.purpose is None
    # a row without change_id: the file's sha256 prefix and the row (line) number
    digest = _sha(text)
    assert first.change_id == f"import.{digest[:12]}.2" == derived_change_id(digest, 2)
    assert erase.change_id == f"import.{digest[:12]}.5"


def test_jsonl_rows_nulls_and_blank_lines(tmp_path: Path) -> None:
    text = (
        '{"subject_id": "s1", "action": "grant", "purpose": "analytics", "recipient": null}\n'
        "\n"
        '{"subject_id": "s2", "action": "GRANT", "purpose": "partner_sharing",'
        ' "recipient": "beta-inc", "change_id": "crm-42", "effective_time": "' + SOON + '"}\n'
        '{"subject_id": "s2", "action": "ERASE"}\n'
    )
    summary, log, rejects = _run(tmp_path, "a.jsonl", text)
    assert rejects == []
    assert summary.rows == 3 and summary.accepted == {"GRANT": 2, "ERASE": 1}
    digest = _sha(text)
    assert [c.change_id for c in log.submitted] == [
        f"import.{digest[:12]}.1",
        "crm-42",
        f"import.{digest[:12]}.4",  # row numbers are line numbers (blank lines count)
    ]


def test_format_by_extension_or_given(tmp_path: Path) -> None:
    assert detect_format(Path("x.CSV")) == "csv"
    assert detect_format(Path("x.jsonl")) == "jsonl"
    assert detect_format(Path("x.ndjson")) == "jsonl"
    assert detect_format(Path("x.txt"), "csv") == "csv"
    with pytest.raises(ImportUsageError, match="--format"):
        detect_format(Path("x.txt"))
    summary, _, _ = _run(tmp_path, "export.txt", HEADER + "s1,GRANT,analytics,,,,,,\n", fmt="csv")
    assert summary.accepted == {"GRANT": 1}


def test_csv_with_bom_reordered_and_fewer_columns(tmp_path: Path) -> None:
    text = "\ufeffAction, Subject_ID ,purpose\nGRANT,s1,analytics\nwithdraw,s1,analytics\n"
    summary, log, rejects = _run(tmp_path, "a.csv", text)
    assert rejects == [] and summary.accepted == {"GRANT": 1, "WITHDRAW": 1}
    assert log.submitted[0].subject_id == "s1"


def test_multiline_csv_field_keeps_row_numbers(tmp_path: Path) -> None:
    text = HEADER + 's1,GRANT,analytics,,,,"notice\nv2",,\n' + "s2,GRANT,nope,,,,,,\n"
    _, log, rejects = _run(tmp_path, "a.csv", text)
    assert log.submitted[0].notice_version == "notice\nv2"
    assert [r["row"] for r in rejects] == [4]  # the record after the two-line one
    assert rejects[0]["raw"] == "s2,GRANT,nope,,,,,,"


# -- rejections -------------------------------------------------------------------------------


PAST = "2020-01-01T00:00:00+00:00"
BAD_CSV_ROWS = [
    # (row text, kind, path, a piece of the reason)
    (",GRANT,analytics,,,,,,", "invalid", "subject_id", "subject_id is required"),
    ("s1,SELL,analytics,,,,,,", "invalid", "action", "'GRANT', 'WITHDRAW' or 'ERASE'"),
    ("s1,GRANT,marketing,,,,,,", "rejected", "purpose", "unknown purpose 'marketing'"),
    ("s1,GRANT,,,,,,,", "rejected", "purpose", "needs a purpose"),
    ("s1,GRANT,partner_sharing,nobody-inc,,,,,", "rejected", "recipient", "unknown recipient"),
    (f"s1,GRANT,analytics,,{PAST},,,,", "rejected", "effective_time", "cannot take effect"),
    ("s1,GRANT,analytics,,2030-01-01T00:00:00,,,,", "invalid", "effective_time", "timezone"),
    ("s1,GRANT,analytics,,next tuesday,,,,", "invalid", "effective_time", "datetime"),
    (f"s1,WITHDRAW,analytics,,{PAST},,,,old", "rejected", "effective_time", "operator path"),
    ("s1,WITHDRAW,analytics,,,,,,because", "rejected", "backdate_reason", "not backdated"),
    (f"s1,GRANT,analytics,,,{PAST},,,", "rejected", "body", "expires_at must be after"),
    ("s1,WITHDRAW,analytics,,,2031-01-01T00:00:00Z,,,", "rejected", "body", "only a GRANT"),
    ("s1,ERASE,analytics,,,,,,", "rejected", "body", "neither purpose nor recipient"),
    ("s1,GRANT,analytics,,,,,bad id!,", "invalid", "change_id", "pattern"),
    ("s1,GRANT,Analytics,,,,,,", "invalid", "purpose", "pattern"),
    ("s1,GRANT,analytics", "bad_csv", "-", "3 fields, the header has 9"),
]


def test_every_rejection_kind_lands_in_the_rejects_file(tmp_path: Path) -> None:
    rows = ["s0,GRANT,analytics,,,,,,", *(r[0] for r in BAD_CSV_ROWS), "s9,GRANT,profiling,,,,,,"]
    summary, log, rejects = _run(tmp_path, "a.csv", HEADER + "\n".join(rows) + "\n")
    assert [c.subject_id for c in log.submitted] == ["s0", "s9"]  # one bad row never aborts
    assert summary.rows == len(rows)
    assert summary.accepted_total == 2 and summary.rejected_total == len(BAD_CSV_ROWS)
    assert summary.exit_code == 1
    assert [r["row"] for r in rejects] == list(range(3, 3 + len(BAD_CSV_ROWS)))
    for reject, (raw, kind, path, reason) in zip(rejects, BAD_CSV_ROWS, strict=True):
        assert reject["raw"] == raw
        assert (reject["kind"], reject["path"]) == (kind, path), reject
        assert reason in reject["reason"], reject
    assert summary.rejected["rejected:effective_time"] == 2
    assert summary.rejected["bad_csv"] == 1
    assert summary.rejected["invalid:subject_id"] == 1


def test_jsonl_rejections(tmp_path: Path) -> None:
    lines = [
        '{"subject_id": "s1", "action": "GRANT", "purpose": "analytics"',  # truncated
        '["s1", "GRANT"]',
        '{"subject_id": "s1", "action": "GRANT", "purpose": "analytics", "method": "API"}',
        '{"subject_id": "s1", "action": "GRANT", "purpose": "analytics", "colour": "red"}',
        '{"subject_id": 42, "action": "GRANT", "purpose": "analytics"}',
        '{"subject_id": "s1", "action": true, "purpose": "analytics"}',
        '{"action": "WITHDRAW", "purpose": "analytics"}',
        '{"subject_id": "s1", "action": "GRANT", "purpose": "profiling"}',
    ]
    summary, log, rejects = _run(tmp_path, "a.jsonl", "\n".join(lines) + "\n")
    assert len(log.submitted) == 1 and summary.accepted == {"GRANT": 1}
    got = [(r["row"], r["kind"], r["path"]) for r in rejects]
    assert got == [
        (1, "bad_json", "-"),
        (2, "bad_json", "-"),
        (3, "invalid", "method"),
        (4, "invalid", "colour"),
        (5, "invalid", "subject_id"),
        (6, "invalid", "action"),
        (7, "invalid", "subject_id"),
    ]
    assert [r["raw"] for r in rejects] == lines[:7]
    assert "not JSON" in rejects[0]["reason"]
    assert "not a JSON object" in rejects[1]["reason"]
    assert "unknown field 'method'" in rejects[2]["reason"]


def test_undecodable_bytes_are_a_rejected_row(tmp_path: Path) -> None:
    data = (HEADER + "s1,GRANT,analytics,,,,,,\n").encode() + b"s\xff2,GRANT,analytics,,,,,,\n"
    summary, _, rejects = _run(tmp_path, "a.csv", data)
    assert summary.accepted_total == 1
    assert [(r["row"], r["kind"], r["reason"]) for r in rejects] == [(3, "bad_csv", "not UTF-8")]
    data = b'{"subject_id": "s\xff", "action": "ERASE"}\n'
    summary, _, rejects = _run(tmp_path, "b.jsonl", data)
    assert [(r["row"], r["kind"]) for r in rejects] == [(1, "bad_json")]


def test_appends_not_acknowledged_are_rejected_rows(tmp_path: Path) -> None:
    text = HEADER + "".join(f"s{i},GRANT,analytics,,,,,c{i},\n" for i in range(6))
    log = FakeChangeLog(fail=frozenset({"c1", "c4"}), raise_on=frozenset({"c2"}))
    summary, _, rejects = _run(tmp_path, "a.csv", text, changelog=log)
    assert summary.accepted == {"GRANT": 3}
    assert summary.append_failed == 3 and summary.exit_code == 1
    assert summary.rejected == {"not_acknowledged": 3}
    assert sorted(r["row"] for r in rejects) == [3, 4, 6]
    assert all(r["reason"].startswith("not acknowledged: ") for r in rejects)
    assert "Not enough replicas" in next(r["reason"] for r in rejects if r["row"] == 3)
    assert "NOT ACKNOWLEDGED" in summary.render()


def test_in_flight_appends_are_bounded(tmp_path: Path) -> None:
    text = HEADER + "".join(f"s{i % 7},GRANT,analytics,,,,,,\n" for i in range(1000))
    summary, log, _ = _run(tmp_path, "a.csv", text, max_in_flight=10)
    assert summary.accepted_total == 1000
    assert log.max_outstanding == 10 and log.outstanding == 0


# -- idempotency, summary, usage --------------------------------------------------------------


def test_derived_change_ids_are_deterministic_per_file_content(tmp_path: Path) -> None:
    text = HEADER + "s1,GRANT,analytics,,,,,,\ns1,WITHDRAW,analytics,,,,,,\n"
    _, first, _ = _run(tmp_path, "a.csv", text)
    _, again, _ = _run(tmp_path, "b.csv", text)  # same content, another name: same ids
    _, edited, _ = _run(tmp_path, "a.csv", text + "s2,GRANT,analytics,,,,,,\n")
    ids = [c.change_id for c in first.submitted]
    assert ids == [c.change_id for c in again.submitted]
    assert len(set(ids)) == 2
    assert not set(ids) & {c.change_id for c in edited.submitted}  # other content, other ids


def test_summary_render_and_exit_codes(tmp_path: Path) -> None:
    text = HEADER + "s1,GRANT,analytics,,,,,,\ns2,GRANT,nope,,,,,,\ns3,ERASE,,,,,,,\n"
    summary, _, _ = _run(tmp_path, "a.csv", text)
    assert summary.rows == 3 and summary.accepted_total == 2 and summary.rejected_total == 1
    assert summary.elapsed > 0 and summary.rate > 0
    out = summary.render()
    assert "rows read" in out and "GRANT 1" in out and "ERASE 1" in out
    assert "rejected:purpose 1" in out and "changes/s" in out
    assert summary.exit_code == 1
    ok, _, _ = _run(tmp_path, "b.csv", HEADER + "s1,GRANT,analytics,,,,,,\n")
    assert ok.exit_code == 0
    empty, _, _ = _run(tmp_path, "c.csv", "")
    assert empty.rows == 0 and empty.exit_code == 0
    header_only, _, _ = _run(tmp_path, "d.csv", HEADER)
    assert header_only.rows == 0 and header_only.exit_code == 0


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("subject_id,action,purpose,colour\n", "unknown column 'colour'"),
        ("subject_id,purpose\n", "missing column 'action'"),
        ("subject_id,action,purpose,purpose\n", "column 'purpose' given twice"),
        ("subject_id,action,method\n", "unknown column 'method'"),
    ],
)
def test_bad_csv_header_is_a_usage_error(tmp_path: Path, header: str, message: str) -> None:
    path = tmp_path / "a.csv"
    path.write_text(header + "s1,GRANT,analytics,x\n")
    importer, log = _importer()
    with pytest.raises(ImportUsageError, match=message):
        importer.run(path, tmp_path / "rejects.jsonl")
    assert log.submitted == []


def test_cli_registers_import_with_its_options() -> None:
    args = build_parser().parse_args(["consent", "import", "consents.csv"])
    assert args.file == Path("consents.csv")
    assert args.format is None and args.rejects is None and args.progress is None
    assert args.changes_topic == "consent.changes.v1" and args.max_in_flight == 50_000
    args = build_parser().parse_args(
        ["consent", "import", "x", "--format", "jsonl", "--no-progress", "--rejects", "r.jsonl"]
    )
    assert (args.format, args.progress, args.rejects) == ("jsonl", False, Path("r.jsonl"))


def test_cli_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONSENTGATE_BOOTSTRAP", raising=False)
    assert main(["consent", "import", str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "data.txt").write_text("x\n")
    assert main(["consent", "import", str(tmp_path / "data.txt")]) == 2
    assert "--format" in capsys.readouterr().err
    (tmp_path / "ok.csv").write_text(HEADER)
    assert main(["consent", "import", str(tmp_path / "ok.csv")]) == 2  # no cluster configured
    assert "CONSENTGATE_BOOTSTRAP" in capsys.readouterr().err
