"""Two ``consentgate consent`` CLI writers racing on one subject, on the real broker.

Two threads each run a sequence of real ``consentgate consent grant|withdraw`` processes
(scheduled grants, expiries, a backdated withdrawal, a retry with the same change id,
``--wait``) on ONE subject while a fold runs. Every change a CLI reports (change id and
``topic[partition]@offset``) must be the record at that offset of consent.changes, must end
up in the subject's consent.state record exactly once, and the record's changes and grant
intervals must equal the pure fold (``consent.timeline.apply``) of the logged changes. The
checker is shown to catch a lost change (every single one). ``consent show --json`` must
print the same, and ``--wait`` must report both a folded change and one the fold has not
folded (fold stopped: exit 1).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consentgate.consent.timeline import Timeline, apply
from consentgate.models.consent import ConsentChange
from tests.integration.consent_harness import ConsentEnv
from tests.kafka_helpers import consume_all

pytestmark = pytest.mark.integration

CLI_TIMEOUT = 180.0
VISIBLE_TIMEOUT = 180.0
RECEIPT = re.compile(
    r"^(?P<action>GRANT|WITHDRAW) (?P<subject>\S+)(?: (?P<what>.*?))?: change (?P<id>\S+)"
    r" at (?P<topic>\S+)\[(?P<partition>\d+)\]@(?P<offset>\d+)$"
)
WAITED = re.compile(r"^in (?P<topic>\S+): timeline version (?P<version>\d+)$")


@dataclass(frozen=True)
class Reported:
    """One change as a CLI process printed it."""

    writer: str
    step: int
    action: str
    purpose: str
    recipient: str | None
    change_id: str
    topic: str
    partition: int
    offset: int
    waited_version: int | None  # from ``--wait``: "in <state>: timeline version N"


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds")


def _run_cli(env: ConsentEnv, args: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "consentgate",
        "consent",
        *args,
        "--policy",
        str(env.policy_path),
        "--changes-topic",
        env.changes,
        "--state-topic",
        env.state,
    ]
    return subprocess.run(
        cmd,
        env={**os.environ, "CONSENTGATE_BOOTSTRAP": env.bootstrap},
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def _parse(writer: str, step: int, out: str) -> Reported:
    receipts = [m for line in out.splitlines() if (m := RECEIPT.match(line.strip()))]
    assert len(receipts) == 1, out
    m = receipts[0]
    what = (m["what"] or "").split()
    waited = [w for line in out.splitlines() if (w := WAITED.match(line.strip()))]
    return Reported(
        writer=writer,
        step=step,
        action=m["action"],
        purpose=what[0],
        recipient=what[1] if len(what) > 1 else None,
        change_id=m["id"],
        topic=m["topic"],
        partition=int(m["partition"]),
        offset=int(m["offset"]),
        waited_version=int(waited[0]["version"]) if waited else None,
    )


def _steps(partner: str) -> list[list[str]]:
    """One writer's commands (relative times: see ``_materialize``)."""
    return [
        ["grant", "analytics"],
        ["grant", "partner_sharing", "--recipient", partner, "--expires-at", "+3600"],
        ["withdraw", "analytics"],
        # scheduled ahead: logged before later changes, effective after them
        ["grant", "analytics", "--effective-time", "+20"],
        # operator path: effective before it is recorded
        ["withdraw", "partner_sharing", "--recipient", partner, "--backdate-to", "-0.5"],
        ["grant", "analytics", "--expires-at", "+40", "--wait", str(VISIBLE_TIMEOUT)],
    ]


def _materialize(args: list[str]) -> list[str]:
    """Relative times (``+S``/``-S`` after a time option) become ISO times from now."""
    out: list[str] = []
    now = datetime.now(UTC)
    for i, arg in enumerate(args):
        if i and args[i - 1] in ("--effective-time", "--expires-at", "--backdate-to"):
            out.append(_iso(now + timedelta(seconds=float(arg))))
        else:
            out.append(arg)
    if "--backdate-to" in args:
        out += ["--reason", "withdrew by phone (test)"]
    return out


def _log_records(env: ConsentEnv, partition: int) -> dict[int, ConsentChange]:
    """offset -> change of every record on ``partition`` of consent.changes."""
    out: dict[int, ConsentChange] = {}
    for msg in consume_all(env.bootstrap, env.changes, timeout=60):
        if msg.partition() == partition:
            out[msg.offset()] = env.serde.decode_model(msg.value(), ConsentChange)
    return out


def _fold(changes: list[ConsentChange]) -> Timeline:
    timeline: Timeline | None = None
    for change in changes:
        timeline = apply(timeline, change)
    assert timeline is not None
    return timeline


def _intervals(timeline: Timeline) -> dict[tuple[str, str | None], list[tuple[Any, ...]]]:
    return {
        key: [(i.start, i.end, i.end_reason, i.ended_by) for i in timeline.intervals(*key)]
        for key in timeline.keys()  # noqa: SIM118  # not a dict
    }


def problems(
    observed: Timeline, reported: list[Reported], logged: dict[int, ConsentChange]
) -> list[str]:
    """Everything in which ``observed`` (the subject's consent.state record) is not the fold
    of the reported changes; empty when it is."""
    out: list[str] = []
    retained = [c.change_id for c in observed.record.changes]
    for r in reported:
        n = retained.count(r.change_id)
        if n != 1:
            out.append(f"{r.writer}#{r.step} {r.change_id}: {n} times in consent.state")
    extra = set(retained) - {r.change_id for r in reported}
    if extra:
        out.append(f"changes nobody reported: {sorted(extra)}")
    distinct = len({r.change_id for r in reported})
    if observed.version != distinct:
        out.append(f"version {observed.version}, {distinct} distinct changes reported")
    # the expected record: the pure fold of the logged changes, in log order (a retry keeps
    # the first one logged, as the fold does)
    expected = _fold([logged[o] for o in sorted(logged)])
    if observed.record.changes != expected.record.changes:
        out.append(
            "retained changes differ from the fold: "
            f"{[c.change_id for c in observed.record.changes]} != "
            f"{[c.change_id for c in expected.record.changes]}"
        )
    if _intervals(observed) != _intervals(expected):
        out.append(f"intervals {_intervals(observed)} != expected {_intervals(expected)}")
    return out


def _render_intervals(timeline: Timeline) -> list[dict[str, Any]]:
    return [
        {
            "purpose": purpose,
            "recipient": recipient,
            "intervals": [
                {
                    "start": i.start.isoformat(),
                    "end": None if i.end is None else i.end.isoformat(),
                    "end_reason": None if i.end_reason is None else str(i.end_reason),
                }
                for i in timeline.intervals(purpose, recipient)
            ],
        }
        for purpose, recipient in timeline.keys()  # noqa: SIM118  # not a dict
    ]


def test_two_cli_writers_racing_on_one_subject_lose_and_double_nothing(
    consent_env: ConsentEnv, record: Callable[[str, object], None]
) -> None:
    env = consent_env
    env.start_fold(wait_ready=False).wait_ready(VISIBLE_TIMEOUT)
    who = f"cli-race-{uuid.uuid4().hex[:10]}"
    plans = {"a": _steps("client-01"), "b": _steps("client-02")}
    retry_id = f"retry-{who}"
    # writer b withdraws analytics a second time with a chosen change id, then retries it
    plans["b"][2] = ["withdraw", "analytics", "--change-id", retry_id]
    plans["b"].insert(3, ["withdraw", "analytics", "--change-id", retry_id])
    reported: dict[str, list[Reported]] = {w: [] for w in plans}
    failures: list[str] = []

    def writer(name: str) -> None:
        for step, args in enumerate(plans[name]):
            run = _run_cli(env, [args[0], who, *_materialize(args[1:]), "--actor", f"it:{name}"])
            if run.returncode != 0:
                failures.append(f"{name}#{step} {args}: exit {run.returncode}\n{run.stderr}")
                return
            reported[name].append(_parse(name, step, run.stdout))

    threads = [threading.Thread(target=writer, args=(name,)) for name in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CLI_TIMEOUT * 8)
    assert not any(t.is_alive() for t in threads), "a CLI writer hung"
    assert not failures, "\n".join(failures)
    everything = [r for name in plans for r in reported[name]]
    assert len(everything) == sum(len(p) for p in plans.values())

    # every receipt is where it says: one subject, one partition, the record at that offset
    (partition,) = {r.partition for r in everything}
    assert {r.topic for r in everything} == {env.changes}
    logged = _log_records(env, partition)
    assert sorted(logged) == sorted(r.offset for r in everything), "log holds other records"
    for r in everything:
        change = logged[r.offset]
        assert change.change_id == r.change_id, r
        assert change.subject_id == who
        assert (change.action.value, change.purpose, change.recipient) == (
            r.action,
            r.purpose,
            r.recipient,
        )
        assert change.actor == f"it:{r.writer}"
        assert change.method == "CLI"
    # per writer, its appends are in its order (one partition: Kafka's order)
    for name in plans:
        offsets = [r.offset for r in reported[name]]
        assert offsets == sorted(offsets), (name, offsets)
    retries = [r for r in everything if r.change_id == retry_id]
    assert len(retries) == 2 and retries[0].offset != retries[1].offset

    # --wait: the last step of each writer waited until consent.state showed its change;
    # the fold folds a partition in offset order, so it also shows the writer's earlier ones
    for name in plans:
        last = reported[name][-1]
        assert last.waited_version is not None, last
        assert len({r.change_id for r in reported[name]}) <= last.waited_version <= len(logged)

    ids = sorted({r.change_id for r in everything})
    state = env.wait_visible(who, ids, VISIBLE_TIMEOUT)
    assert state.timeline is not None
    observed = state.timeline
    found = problems(observed, everything, logged)
    assert not found, "\n".join(found)

    # the checker catches a lost change: the fold of all but one, for every one
    for lost in ids:
        rest = {o: c for o, c in logged.items() if c.change_id != lost}
        caught = problems(_fold([rest[o] for o in sorted(rest)]), everything, logged)
        assert caught, f"losing {lost} went unnoticed"
    # ... and the interval check alone catches a lost withdrawal that ended an interval
    enders = {i.ended_by for key in observed.keys() for i in observed.intervals(*key)}  # noqa: SIM118
    withdrawals = {r.change_id for r in everything if r.action == "WITHDRAW"} & enders
    assert withdrawals, _intervals(observed)
    for lost in withdrawals:
        rest = {o: c for o, c in logged.items() if c.change_id != lost}
        assert _intervals(_fold([rest[o] for o in sorted(rest)])) != _intervals(observed), lost

    # consent show --json prints the same record
    shown = _run_cli_show(env, who)
    assert shown["status"] == "present"
    assert shown["partition"] == partition
    assert shown["version"] == len(ids)
    assert [c["change_id"] for c in shown["changes"]] == [
        c.change_id for c in observed.record.changes
    ]
    assert shown["grants"] == _render_intervals(observed)

    # --wait with the fold stopped: the change is appended and reported, the wait times out
    env.stop_folds()
    late = _run_cli(env, ["grant", who, "profiling", "--actor", "it:late", "--wait", "3"])
    assert late.returncode == 1, (late.returncode, late.stdout, late.stderr)
    assert f"not in {env.state} after 3 s" in late.stdout, late.stdout
    late_receipt = _parse("late", 0, late.stdout)
    env.start_fold(wait_ready=False).wait_ready(VISIBLE_TIMEOUT)
    state = env.wait_visible(who, [*ids, late_receipt.change_id], VISIBLE_TIMEOUT)
    assert state.timeline is not None
    logged = _log_records(env, partition)
    found = problems(state.timeline, [*everything, late_receipt], logged)
    assert not found, "\n".join(found)
    record("cli_changes", len(logged))


def _run_cli_show(env: ConsentEnv, who: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "consentgate", "consent", "show", who, "--json"]
    run = subprocess.run(
        [*cmd, "--state-topic", env.state],
        env={**os.environ, "CONSENTGATE_BOOTSTRAP": env.bootstrap},
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert run.returncode == 0, (run.returncode, run.stdout, run.stderr)
    data: dict[str, Any] = json.loads(run.stdout)
    return data
