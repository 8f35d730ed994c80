"""``consentgate consent serve`` runs the API and the fold: what is written through HTTP is
folded into consent-state by serve's own fold child, a fold killed with SIGKILL is restarted
(and loses nothing), SIGTERM stops both, and a fold that refuses to start stops serve."""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from consentgate.consent.fold_child import FoldChild
from tests.integration.api_harness import ApiProcess
from tests.integration.consent_harness import ConsentEnv
from tests.integration.test_consent_api import wait_timeline

pytestmark = pytest.mark.integration


def children(pid: int) -> set[int]:
    """The direct children of ``pid`` (Linux /proc)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.update(int(c) for c in text)
    return out


def wait_children(pid: int, exclude: set[int], timeout: float = 90.0) -> set[int]:
    """Until ``pid`` has a child not in ``exclude``; its children then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children(pid) - exclude
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"pid {pid} started no new child in {timeout} s")


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def grant(api: ApiProcess, subject_id: str) -> str:
    response = api.post(
        f"/v1/subjects/{subject_id}/grants",
        {"purpose": "analytics", "method": "WEB_FORM", "notice_version": "v1"},
    )
    assert response.status_code == 202, response.text
    (receipt,) = response.json()["changes"]
    change_id: str = receipt["change_id"]
    return change_id


def withdraw(api: ApiProcess, subject_id: str) -> str:
    response = api.post(
        f"/v1/subjects/{subject_id}/withdrawals", {"purpose": "analytics", "method": "API"}
    )
    assert response.status_code == 202, response.text
    (receipt,) = response.json()["changes"]
    change_id: str = receipt["change_id"]
    return change_id


def test_serve_runs_the_fold_restarts_it_after_kill_9_and_stops_it(
    consent_env: ConsentEnv,
) -> None:
    api = ApiProcess(consent_env, 0, fold=True)
    restarted = -1
    try:
        api.wait_ready()
        (fold,) = wait_children(api.proc.pid, set())
        subject_id = f"serve-{uuid.uuid4().hex[:10]}"
        first = grant(api, subject_id)
        wait_timeline(api, subject_id, [first])  # only serve's fold writes consent-state

        os.kill(fold, signal.SIGKILL)
        second = withdraw(api, subject_id)  # appended while no fold runs
        (restarted,) = wait_children(api.proc.pid, {fold})
        data = wait_timeline(api, subject_id, [first, second])
        (analytics,) = [g for g in data["grants"] if g["purpose"] == "analytics"]
        (interval,) = analytics["intervals"]
        assert interval["end"] is not None, data  # the withdrawal closed the grant
        assert [c["change_id"] for c in data["changes"]].count(second) == 1
    finally:
        code = api.stop()
    assert code == 0, api.tail()
    assert not alive(restarted), "serve stopped but left its fold running"
    assert "consent fold exited -9: restarting" in api.log.read_text()


def test_serve_stops_when_its_fold_refuses_to_start(consent_env: ConsentEnv) -> None:
    consent_env.admin.delete_topics([consent_env.dlq], operation_timeout=30)
    deadline = time.monotonic() + 30
    while consent_env.dlq in consent_env.admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, "dead-letter topic not deleted"
        time.sleep(0.2)
    api = ApiProcess(consent_env, 0, fold=True)
    try:
        code = api.proc.wait(120)
    finally:
        api.stop()
    assert code == 78, api.tail()
    assert "consent fold refused to start" in api.log.read_text()


def test_the_fold_child_is_restarted_until_it_stops_on_purpose(tmp_path: Path) -> None:
    """Exit 70 (or a kill) restarts it with backoff; exit 0 ends the supervision; exit 78
    calls ``on_refused`` once and is not retried. (No broker: a stand-in command.)"""
    runs = tmp_path / "runs"
    script = (
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(runs)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "sys.exit(int(sys.argv[1]) if n >= 3 else 70)\n"
    )
    for final, refusals in ((0, 0), (78, 1)):
        runs.unlink(missing_ok=True)
        refused: list[bool] = []
        child = FoldChild(
            [sys.executable, "-c", script, str(final)],
            on_refused=functools.partial(refused.append, True),
        )
        child.start()
        deadline = time.monotonic() + 60
        while child._thread.is_alive():
            assert time.monotonic() < deadline, "supervision did not end"
            time.sleep(0.1)
        assert runs.read_text() == "3", "two failures restarted, the third run final"
        assert child.restarts == 2
        assert len(refused) == refusals and child.refused is bool(refusals)
        assert child.stop() == final
