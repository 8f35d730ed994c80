"""A report's three renderings: the terminal table, CSV with one header row, stable JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime

import pytest

from consentgate.ops.report_format import Report, Section, render_csv, render_json, render_text

pytestmark = pytest.mark.unit

KEY = "c83f2cbc9e21ce7d9bdfa813988d6d65dea13326d891f599c40cfa510e9ed678"
T = datetime(2025, 4, 1, 9, 30, 15, 123000, tzinfo=UTC)


def _report() -> Report:
    provisions = Section(
        "provisions",
        "Provisions",
        ("provision_date", "subject_key", "data_items"),
        [
            {"provision_date": date(2025, 4, 1), "subject_key": KEY, "data_items": ("a", "b")},
            {"provision_date": date(2025, 4, 2), "subject_key": KEY, "data_items": ("a", "b")},
            {"provision_date": date(2025, 4, 2), "subject_key": None, "data_items": ("c",)},
        ],
        extra=("provision_id",),
        short=frozenset({"subject_key"}),
    )
    changes = Section(
        "consent_changes",
        "Consent history",
        ("effective_time", "action"),
        [{"effective_time": T, "action": "GRANT", "log_offset": 3}],
        extra=("log_offset",),
    )
    empty = Section("retractions", "Retractions", ("time", "key"))
    return Report(
        "subject",
        "consentgate report: subject s1",
        {"subject_id": "s1", "as_of": T},
        [changes, provisions, empty],
        {"provisions": 1234, "provisions_by_sink": {"p.browsing": 2}},
        {"consent.changes.v1": [1]},
        ["a note"],
    )


def test_terminal_table_abbreviates_keys_and_labels_data_item_lists() -> None:
    text = render_text(_report())
    assert KEY not in text
    assert KEY[:12] + ".." in text
    assert "[1] data items: a, b" in text
    assert "[2] data items: c" in text
    assert "2025-04-01 09:30:15Z" in text  # to the second, UTC
    assert "Retractions: 0\n  (none)" in text
    assert "provisions          1,234" in text
    assert "consent.changes.v1  partitions 1" in text
    assert "note: a note" in text
    header = next(line for line in text.splitlines() if "provision date" in line)
    row = next(line for line in text.splitlines() if line.startswith("  2025-04-01  "))
    assert row.index("[1]") == header.index("data items")  # columns line up


def test_csv_has_one_header_row_and_full_values() -> None:
    rows = list(csv.reader(io.StringIO(render_csv(_report()))))
    assert rows[0] == [
        "section",
        "effective_time",
        "action",
        "log_offset",
        "provision_date",
        "subject_key",
        "data_items",
        "provision_id",
        "time",  # an empty section's columns are there too: one schema per report kind
        "key",
    ]
    assert rows[1] == ["consent_changes", T.isoformat(), "GRANT", "3", "", "", "", "", "", ""]
    assert rows[2][5] == KEY
    assert rows[2][6] == "a;b"
    assert rows[4][5] == ""  # None is empty
    assert len(rows) == 1 + 4


def test_json_is_stable_and_complete() -> None:
    first = render_json(_report())
    assert first == render_json(_report())
    doc = json.loads(first)
    assert list(doc) == sorted(doc)
    assert doc["report"] == "subject"
    assert doc["format_version"] == 1
    assert doc["about"]["as_of"] == T.isoformat()
    (change,) = doc["sections"]["consent_changes"]
    assert change == {"action": "GRANT", "effective_time": T.isoformat(), "log_offset": 3}
    provision = doc["sections"]["provisions"][2]
    assert provision == {
        "data_items": ["c"],
        "provision_date": "2025-04-02",
        "provision_id": None,  # every column of its section, null where empty
        "subject_key": None,
    }
    assert doc["sections"]["retractions"] == []
    assert doc["totals"]["provisions_by_sink"] == {"p.browsing": 2}
    assert doc["read"] == {"consent.changes.v1": [1]}
