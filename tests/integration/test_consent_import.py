"""``consentgate consent import`` on the real broker: the CLI appends every good row of a
file through the write path, rejects the bad ones, the fold puts the changes in
consent-state, and importing the same file again changes nothing there."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consentgate.consent.importer import derived_change_id
from consentgate.models.consent import ConsentChange, ConsentMethod
from tests.integration.conftest import ConsentEnvFactory
from tests.integration.consent_harness import ConsentEnv, FoldProcess
from tests.kafka_helpers import consume_all

pytestmark = pytest.mark.integration

HEADER = "subject_id,action,purpose,recipient,effective_time,change_id\n"
SUBJECTS = 398
GOOD_PER_SUBJECT = (  # in this order: analytics ends withdrawn, the rest stay granted
    "{s},GRANT,analytics,,,",
    "{s},GRANT,partner_sharing,client-01,,",
    "{s},grant,profiling,,,",
    "{s},Withdraw,analytics,,,",
    "{s},GRANT,partner_sharing,client-02,,",
)
BAD = [  # (row text, kind, path)
    (",GRANT,analytics,,,", "invalid", "subject_id"),
    ("imp-bad-1,SELL,analytics,,,", "invalid", "action"),
    ("imp-bad-2,GRANT,marketing,,,", "rejected", "purpose"),
    ("imp-bad-3,GRANT,partner_sharing,acme-corp,,", "rejected", "recipient"),
    ("imp-bad-4,GRANT,analytics,,2020-01-01T00:00:00+00:00,", "rejected", "effective_time"),
    ("imp-bad-5,WITHDRAW,analytics,,2020-01-01T00:00:00Z,", "rejected", "effective_time"),
    ("imp-bad-6,GRANT,analytics,,2030-01-01T00:00:00,", "invalid", "effective_time"),
    ("imp-bad-7,GRANT,analytics,,,not an id!", "invalid", "change_id"),
    ("imp-bad-8,GRANT,Analytics,,,", "invalid", "purpose"),
    ("imp-bad-9,GRANT,analytics", "bad_csv", "-"),
]


def _write_file(path: Path) -> tuple[dict[str, list[int]], dict[int, tuple[str, str, str]]]:
    """2,000 rows: 1,990 good ones (398 subjects x 5) and 10 bad ones spread among them.
    Returns the line numbers of each subject's rows and the bad rows by line number."""
    good = [
        (f"imp-{i:04d}", template.format(s=f"imp-{i:04d}"))
        for i in range(SUBJECTS)
        for template in GOOD_PER_SUBJECT
    ]
    lines = [HEADER]  # lines[k] is line k + 1 of the file
    rows: dict[str, list[int]] = {}
    bad: dict[int, tuple[str, str, str]] = {}
    every = len(good) // len(BAD)
    for n, (subject, text) in enumerate(good):
        if n % every == every // 2:  # one bad row in each stretch of 199 good ones
            bad[len(lines) + 1] = BAD[len(bad)]
            lines.append(bad[len(lines) + 1][0] + "\n")
        rows.setdefault(subject, []).append(len(lines) + 1)
        lines.append(text + "\n")
    path.write_text("".join(lines))
    assert len(lines) - 1 == 2000 and len(bad) == 10
    return rows, bad


def _import(env: ConsentEnv, path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        *("-m", "consentgate", "consent", "import", str(path)),
        *("--policy", str(env.policy_path), "--changes-topic", env.changes, "--no-progress"),
    ]
    environ = {**os.environ, "CONSENTGATE_BOOTSTRAP": env.bootstrap}
    return subprocess.run(
        cmd, env=environ, capture_output=True, text=True, timeout=120, check=False
    )


def _wait_metric(fold: FoldProcess, name: str, at_least: float, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while (value := fold.metric(name)) < at_least:
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} = {value} < {at_least} after {timeout} s\n{fold.tail()}")
        time.sleep(0.2)
    return value


def test_import_appends_good_rows_rejects_bad_ones_and_reimport_is_idempotent(
    consent_env_factory: ConsentEnvFactory, tmp_path: Path
) -> None:
    env = consent_env_factory()
    fold = env.start_fold()
    path = tmp_path / "consents.csv"
    rows, bad = _write_file(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    started = datetime.now(UTC)

    done = _import(env, path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "rows read" in done.stdout and "1,990" in done.stdout, done.stdout
    rejects = [json.loads(line) for line in Path(f"{path}.rejects.jsonl").read_text().splitlines()]
    assert sorted(r["row"] for r in rejects) == sorted(bad)
    for reject in rejects:
        raw, kind, field = bad[reject["row"]]
        assert (reject["raw"], reject["kind"], reject["path"]) == (raw, kind, field), reject
        assert reject["reason"]

    logged = consume_all(env.bootstrap, env.changes, expected=1990, timeout=60)
    assert len(logged) == 1990
    changes = [env.serde.decode_model(m.value(), ConsentChange) for m in logged]
    expected_ids = {derived_change_id(digest, n) for lines in rows.values() for n in lines}
    assert {c.change_id for c in changes} == expected_ids
    assert {c.method for c in changes} == {ConsentMethod.IMPORT}
    assert all(c.actor and c.actor.startswith("import:") for c in changes)
    assert all(m.key() == c.subject_id.encode() for m, c in zip(logged, changes, strict=True))
    # the import clock follows the wall clock: nothing is recorded in the future
    assert max(c.recorded_time for c in changes) <= datetime.now(UTC)
    assert min(c.recorded_time for c in changes) >= started.replace(microsecond=0)

    sample = [f"imp-{i:04d}" for i in range(0, SUBJECTS, 20)]
    versions = {}
    for subject in sample:
        ids = [derived_change_id(digest, n) for n in rows[subject]]
        state = env.wait_visible(subject, ids, timeout=60)
        timeline = state.timeline
        assert timeline is not None
        versions[subject] = timeline.version
        # the file's order within the subject is kept: analytics granted, then withdrawn
        (analytics,) = timeline.intervals("analytics", None)
        assert analytics.end is not None
        for key in (("partner_sharing", "client-01"), ("partner_sharing", "client-02")):
            (interval,) = timeline.intervals(*key)
            assert interval.end is None
        assert timeline.record.changes[0].change_id == ids[0]
    _wait_metric(fold, "consentgate_fold_changes", 1990)

    # the same file again: appended again, dropped by the fold as retries of the same ids
    again = _import(env, path)
    assert again.returncode == 1, again.stdout + again.stderr
    assert len(Path(f"{path}.rejects.jsonl").read_text().splitlines()) == 10
    assert len(consume_all(env.bootstrap, env.changes, expected=3980, timeout=60)) == 3980
    _wait_metric(fold, "consentgate_fold_duplicates", 1990)
    assert fold.metric("consentgate_fold_changes") == 1990
    assert fold.metric("consentgate_fold_rejected") == 0
    for subject in sample:
        timeline = env.subject_state(subject).timeline
        assert timeline is not None and timeline.version == versions[subject], subject
