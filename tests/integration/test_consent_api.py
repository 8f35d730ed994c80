"""The consent HTTP API on the real broker: ``consentgate consent serve`` processes over their
own topics and a fold worker. What is written through HTTP lands where the answer says and
shows up in consent-state; two replicas racing on one subject lose nothing; a retry is
applied once; and schemathesis, fuzzing the live app from its own OpenAPI document, finds
no input that makes it answer 5xx."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from consentgate.models.consent import ConsentChange
from consentgate.router.config import DEFAULT_POLICY
from consentgate.router.partitioner import partition_for
from tests.integration.api_harness import OPERATOR, TOKEN, ApiProcess
from tests.integration.consent_harness import ConsentEnv
from tests.kafka_helpers import read_at
from tests.unit.tcf_encode import encode

pytestmark = pytest.mark.integration

PARTITIONS = 3
VISIBLE_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def env(
    kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsentEnv]:
    workdir = tmp_path_factory.mktemp("consent-api")
    policy = workdir / "policy.yaml"
    shutil.copyfile(DEFAULT_POLICY, policy)
    suffix = uuid.uuid4().hex[:10]
    consent = ConsentEnv(
        kafka_bootstrap,
        kafka_admin,
        workdir,
        policy,
        changes=f"api-changes-{suffix}",
        state=f"api-state-{suffix}",
        dlq=f"api-dlq-{suffix}",
        partitions=PARTITIONS,
    )
    try:
        consent.start_fold()
        yield consent
    finally:
        consent.close()
        consent.delete_topics()


@pytest.fixture(scope="module")
def api_factory(env: ConsentEnv) -> Iterator[Callable[[], ApiProcess]]:
    started: list[ApiProcess] = []

    def start() -> ApiProcess:
        api = ApiProcess(env, len(started))
        started.append(api)
        api.wait_ready()
        return api

    yield start
    codes = {api.log.name: api.stop() for api in started}
    bad = {name: code for name, code in codes.items() if code != 0}
    assert not bad, f"API processes did not stop cleanly on SIGTERM: {bad}"


@pytest.fixture(scope="module")
def api(api_factory: Callable[[], ApiProcess]) -> ApiProcess:
    return api_factory()


def subject(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_timeline(
    api: ApiProcess, subject_id: str, ids: list[str], timeout: float = VISIBLE_TIMEOUT
) -> dict[str, Any]:
    """GET the timeline through the API until it retains every change id in ``ids``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        response = api.client.get(f"/v1/subjects/{subject_id}/timeline")
        last = (response.status_code, response.text[:500])
        if response.status_code == 200:
            data: dict[str, Any] = response.json()
            if set(ids) <= {c["change_id"] for c in data.get("changes", [])}:
                return data
        else:
            assert response.status_code in (404, 503), last
        time.sleep(0.5)
    raise AssertionError(f"{subject_id}: {ids} not in the timeline in {timeout} s; last {last}")


# -- tests ------------------------------------------------------------------------------------
def test_grant_then_withdrawal_land_where_the_answer_says_and_close_the_interval(
    env: ConsentEnv, api: ApiProcess
) -> None:
    who = subject("alice")
    key = {"purpose": "partner_sharing", "recipient": "kaede-trading"}
    granted = api.post(f"/v1/subjects/{who}/grants", {**key, "change_id": f"g-{who}"})
    assert granted.status_code == 202, granted.text
    withdrawn = api.post(f"/v1/subjects/{who}/withdrawals", {**key, "change_id": f"w-{who}"})
    assert withdrawn.status_code == 202, withdrawn.text
    receipts = granted.json()["changes"] + withdrawn.json()["changes"]
    assert [r["change_id"] for r in receipts] == [f"g-{who}", f"w-{who}"]

    for receipt in receipts:
        assert receipt["topic"] == env.changes
        assert receipt["partition"] == partition_for(who.encode(), PARTITIONS)
        msg = read_at(env.bootstrap, env.changes, receipt["partition"], receipt["offset"])
        assert msg.key() == who.encode()
        logged = env.serde.decode_model(msg.value(), ConsentChange)
        assert logged.change_id == receipt["change_id"]
        assert logged.action == receipt["action"]
        assert logged.actor == "api:client"
        assert logged.effective_time == datetime.fromisoformat(receipt["effective_time"])
        assert logged.recorded_time == datetime.fromisoformat(receipt["recorded_time"])

    data = wait_timeline(api, who, [f"g-{who}", f"w-{who}"])
    assert data["status"] == "present"
    (grant,) = data["grants"]
    assert (grant["purpose"], grant["recipient"]) == ("partner_sharing", "kaede-trading")
    (interval,) = grant["intervals"]
    assert interval["start"] == receipts[0]["effective_time"].replace("Z", "+00:00")
    assert datetime.fromisoformat(interval["end"]) == datetime.fromisoformat(
        receipts[1]["effective_time"]
    )
    assert interval["end_reason"] == "withdrawn"
    # the state the harness reads agrees
    state = env.wait_visible(who, [f"g-{who}", f"w-{who}"], VISIBLE_TIMEOUT)
    assert state.timeline is not None and state.timeline.record.version == 2

    unknown = api.client.get(f"/v1/subjects/{subject('nobody')}/timeline")
    assert unknown.status_code == 404, unknown.text


def test_two_replicas_racing_on_one_subject_lose_no_change(
    env: ConsentEnv, api: ApiProcess, api_factory: Callable[[], ApiProcess]
) -> None:
    other = api_factory()
    who = subject("race")
    keys = [
        {"purpose": "analytics"},
        {"purpose": "partner_sharing", "recipient": "hoshino-electric"},
    ]

    def one(job: tuple[ApiProcess, str, int]) -> str:
        replica, name, i = job
        action = "grants" if i % 2 == 0 else "withdrawals"
        change_id = f"{name}-{i:03d}"
        response = replica.post(
            f"/v1/subjects/{who}/{action}", {**keys[(i // 2) % 2], "change_id": change_id}
        )
        assert response.status_code == 202, (change_id, response.status_code, response.text)
        return change_id

    jobs = [(replica, name, i) for i in range(50) for replica, name in ((api, "a"), (other, "b"))]
    with ThreadPoolExecutor(max_workers=12) as pool:
        ids = list(pool.map(one, jobs))
    assert len(set(ids)) == 100

    state = env.wait_visible(who, ids, VISIBLE_TIMEOUT)
    assert state.timeline is not None
    retained = [c.change_id for c in state.timeline.record.changes]
    assert sorted(retained) == sorted(ids)
    assert state.timeline.record.version == 100
    # both replicas read the same state back
    for replica in (api, other):
        data = wait_timeline(replica, who, ids)
        assert len(data["changes"]) == 100
    assert {c.actor for c in state.timeline.record.changes} == {"api:client"}


def test_a_retried_request_with_the_same_change_id_is_applied_once(
    env: ConsentEnv, api: ApiProcess
) -> None:
    who = subject("retry")
    body = {"purpose": "analytics", "change_id": f"once-{who}"}
    first = api.post(f"/v1/subjects/{who}/grants", body)
    again = api.post(f"/v1/subjects/{who}/grants", body)
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    (r1,), (r2,) = first.json()["changes"], again.json()["changes"]
    assert r2["offset"] > r1["offset"]  # both are in the log: the fold dedups
    # a later change on the same partition: once it is folded, so is the retry before it
    marker = api.post(f"/v1/subjects/{who}/withdrawals", {"purpose": "analytics"})
    assert marker.status_code == 202, marker.text
    marker_id = marker.json()["changes"][0]["change_id"]

    state = env.wait_visible(who, [f"once-{who}", marker_id], VISIBLE_TIMEOUT)
    assert state.timeline is not None
    record = state.timeline.record
    assert [c.change_id for c in record.changes].count(f"once-{who}") == 1
    assert record.version == 2
    kept = next(c for c in record.changes if c.change_id == f"once-{who}")
    assert kept.recorded_time == datetime.fromisoformat(r1["recorded_time"])  # the first wins

    # a GPC signal retried with its change id: every withdrawal once
    gpc = {"change_id": f"gpc-{who}"}
    sent = [api.post(f"/v1/subjects/{who}/gpc", gpc) for _ in range(2)]
    assert [s.status_code for s in sent] == [202, 202]
    ids = [c["change_id"] for c in sent[0].json()["changes"]]
    assert ids == [c["change_id"] for c in sent[1].json()["changes"]]
    after = api.post(f"/v1/subjects/{who}/grants", {"purpose": "profiling"})
    assert after.status_code == 202
    state = env.wait_visible(who, [*ids, after.json()["changes"][0]["change_id"]], VISIBLE_TIMEOUT)
    assert state.timeline is not None
    assert state.timeline.record.version == 2 + len(ids) + 1


def test_tc_strings_valid_malformed_and_of_unknown_versions(
    api: ApiProcess, env: ConsentEnv
) -> None:
    who = subject("tcf")
    refused = {
        "malformed": "not a tc string",
        "truncated": encode(purpose_consents=frozenset({1, 8, 9}))[:6],
        "version 1": encode(version=1),
        "TCF v2.0 (policy version 2)": encode(policy_version=2),
    }
    for name, tc in refused.items():
        response = api.post(f"/v1/subjects/{who}/tcf", {"tc_string": tc})
        assert response.status_code == 422, (name, response.text)
        (error,) = response.json()["detail"]
        assert error["loc"][:2] == ["body", "tc_string"], (name, error)

    tc = encode(purpose_consents=frozenset({1, 3, 4, 8, 9}), vendor_consents=frozenset({9001}))
    response = api.post(f"/v1/subjects/{who}/tcf", {"tc_string": tc, "change_id": f"cmp-{who}"})
    assert response.status_code == 202, response.text
    receipts = response.json()["changes"]
    actions = {(r["purpose"], r["recipient"]): r["action"] for r in receipts}
    assert actions[("analytics", None)] == "GRANT"
    assert actions[("partner_sharing", "kaede-trading")] == "GRANT"  # vendor 9001
    assert actions[("partner_sharing", "minato-bank")] == "WITHDRAW"  # 9003: no consent
    ids = [r["change_id"] for r in receipts]
    state = env.wait_visible(who, ids, VISIBLE_TIMEOUT)
    assert state.timeline is not None
    record = state.timeline.record
    # one partition, folded in log order: a refused string appended before would be here
    assert {c.change_id for c in record.changes} == set(ids)
    assert {c.method.value for c in record.changes} == {"TCF"}
    assert {c.tcf_string for c in record.changes} == {tc}
    assert state.timeline.intervals("partner_sharing", "kaede-trading")
    assert not state.timeline.intervals("partner_sharing", "minato-bank")


def accepted_changes(api: ApiProcess) -> float:
    """Changes the API has appended so far (its own metric)."""
    text = httpx.get(f"{api.url}/metrics", timeout=30).text
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("consentgate_api_changes_accepted_total{")
    )


def schemathesis(api: ApiProcess, workdir: Path, token: str, *extra: str) -> int:
    """Run ``st run`` against the live app's /openapi.json; the number of cases it ran."""
    st = Path(sys.executable).with_name("st")
    cmd = [
        str(st if st.exists() else st.with_name("schemathesis")),
        "run",
        f"{api.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--header",
        f"Authorization: Bearer {token}",
        "--workers",  # one: CPython 3.11's ast.parse is not thread-safe (gh-106905), and
        "1",  # hypothesis parses source to describe filters, in every schemathesis worker
        "--request-timeout",
        "60",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "too_slow",
        "--no-color",
        *extra,
    ]
    workdir.mkdir(exist_ok=True)
    run = subprocess.run(
        cmd,
        cwd=workdir,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"schemathesis exit {run.returncode}:\n{output[-8000:]}"
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts is not None, output[-4000:]
    assert counts.group(1) == counts.group(2), counts.group(0)
    return int(counts.group(1))


def test_schemathesis_finds_no_input_that_is_a_server_error(
    api: ApiProcess, tmp_path: Path
) -> None:
    before = accepted_changes(api)
    cases = schemathesis(api, tmp_path / "client", TOKEN, "--max-examples", "50")
    assert cases > 100
    # the fuzzer got past validation: generated changes were appended and acknowledged
    assert accepted_changes(api) > before
    # the operator path (backdated withdrawals) too
    cases = schemathesis(
        api,
        tmp_path / "operator",
        OPERATOR,
        "--max-examples",
        "30",
        "--include-path-regex",
        "withdrawals$",
    )
    assert cases > 10
    log = api.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-8000:]
    assert TOKEN not in log and OPERATOR not in log
