"""``consentgate policy check`` and ``consentgate policy diff``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from consentgate.cli import main
from tests.unit.test_policy import BASE, DEPLOY, KAEDE, sink, variant

pytestmark = pytest.mark.unit

MINATO = "partner.minato-bank.browsing"


def test_check_prints_the_sinks_and_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", str(DEPLOY)]) == 0
    out = capsys.readouterr().out
    assert "valid, version " in out
    header = next(line for line in out.splitlines() if line.startswith("SINK"))
    assert header.split() == [
        "SINK", "TOPIC", "PURPOSE", "RECIPIENT", "EXTRA", "SUBJECT", "#FIELDS", "RETRACTABLE"
    ]  # fmt: skip
    for entry in BASE["sinks"]:
        row = next(line for line in out.splitlines() if line.startswith(entry["name"] + " "))
        assert entry["topic"] in row and row.endswith("yes")
        assert row.index(entry["topic"]) == header.index("TOPIC")  # aligned
    assert "profiling" in next(line for line in out.splitlines() if "scores.v1" in line)


def test_check_warns_about_unretractable_sinks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(variant(lambda d: sink(d, "analytics").update(subject_id="drop")))
    assert main(["policy", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "NO" in next(line for line in out.splitlines() if line.startswith("analytics "))
    assert "not retractable" in out


def test_check_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(variant(lambda d: sink(d, KAEDE).update(recipient="nobody")))
    assert main(["policy", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: sinks[1] ({KAEDE}).recipient: 'nobody' is not a declared recipient" in err


def write_lines(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def browsing(event_id: str, subject: str, gpc: bool = False) -> dict[str, Any]:
    return {
        "source": "browsing",
        "event": {
            "event_id": event_id,
            "subject_id": subject,
            "event_time": "2025-04-01T10:00:00+00:00",
            "event_type": "JOB_VIEW",
            "job_id": "j-1",
            "gpc": gpc,
        },
    }


def grant(change_id: str, purpose: str, recipient: str | None) -> dict[str, Any]:
    return {
        "change_id": change_id,
        "subject_id": "s-1",
        "action": "GRANT",
        "purpose": purpose,
        "recipient": recipient,
        "effective_time": "2025-04-01T00:00:00+00:00",
        "recorded_time": "2025-04-01T00:00:00+00:00",
        "method": "WEB_FORM",
    }


def test_diff_lists_the_events_whose_routing_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def proposal(d: dict[str, Any]) -> None:
        d["sinks"].remove(sink(d, KAEDE))
        sink(d, MINATO)["opt_out_signals"] = []
        sink(d, "analytics")["fields"].remove("referrer")

    new = tmp_path / "new.yaml"
    new.write_text(variant(proposal))
    events = write_lines(
        tmp_path / "events.jsonl",
        [browsing("e-1", "s-1"), browsing("e-2", "s-1", gpc=True), browsing("e-3", "s-2")],
    )
    consent = write_lines(
        tmp_path / "consent.jsonl",
        [
            grant("g1", "analytics", None),
            grant("g2", "partner_sharing", "kaede-trading"),
            grant("g3", "partner_sharing", "minato-bank"),
        ],
    )
    argv = ["policy", "diff", str(DEPLOY), str(new), "--events", str(events)]
    argv += ["--consent", str(consent), "--now", "2025-04-02T00:00:00+00:00"]
    assert main([*argv, "--exit-code"]) == 1
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["analytics"] == ["0", "0", "0", "fields", "-referrer"]
    assert rows[KAEDE] == ["1", "0", "1", "removed"]
    assert rows[MINATO][:3] == ["1", "1", "0"]
    assert "3 events, 1 subjects with consent" in out
    assert "e-1: allowed -> absent" in out
    assert "e-2: opt_out_signal -> allowed" in out


def test_diff_without_consent_denies_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump(BASE))
    events = write_lines(tmp_path / "events.jsonl", [browsing("e-1", "s-1")])
    argv = ["policy", "diff", str(DEPLOY), str(new), "--events", str(events), "--exit-code"]
    assert main(argv) == 0
    assert "1 events, 0 subjects with consent" in capsys.readouterr().out


def test_diff_rejects_a_malformed_events_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"source": "browsing", "event": {}}\n[1, 2]\n')
    assert main(["policy", "diff", str(DEPLOY), str(DEPLOY), "--events", str(events)]) == 2
    assert f"{events}:2: expected" in capsys.readouterr().err
