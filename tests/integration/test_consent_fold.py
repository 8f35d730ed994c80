"""The consent fold on the real broker: the six ways the old in-process writer lost consent,
each reproduced, plus order, duplicates and restarts.

The old writer (consentgate.consent.writer, removed) folded changes into consent-state
itself; these tests were run against it first (see the issue's closing note).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from consentgate.consent.changelog import ChangeLog
from consentgate.consent.requests import ChangeRequest, Rejected
from consentgate.models.consent import ConsentAction
from tests.integration.conftest import ConsentEnvFactory
from tests.integration.consent_harness import ConsentEnv, new_change
from tests.kafka_helpers import consume_all

pytestmark = pytest.mark.integration


def _ids(env: ConsentEnv, subject: str) -> set[str]:
    timeline = env.subject_state(subject).timeline
    assert timeline is not None
    return {c.change_id for c in timeline.record.changes}


def _letters(env: ConsentEnv, expected: int) -> list[dict[str, object]]:
    msgs = consume_all(env.bootstrap, env.dlq, expected=expected, timeout=30)
    return [env.serde.decode(m.value()).value for m in msgs]


def test_a_failed_state_write_is_retried_not_forgotten(
    consent_env_factory: ConsentEnvFactory, kafka_admin: AdminClient
) -> None:
    """Defect 1: the state write of a withdrawal fails (the record is too big for the
    topic). The fold stops without acknowledging it (exit 70); once the topic is fixed and
    the fold restarted, consent-state shows the withdrawal."""
    env = consent_env_factory(state_config={"max.message.bytes": "210"})
    fold = env.start_fold()
    env.consent("ana", "GRANT", "analytics")
    withdraw = env.request(subject_id="ana", action="WITHDRAW", purpose="analytics")
    env.record(withdraw, wait=0)
    fold.proc.wait(60)
    assert fold.proc.returncode == 70, fold.tail()
    assert "state write failed" in fold.tail()
    state = env.subject_state("ana").timeline
    assert state is not None and withdraw.change_id not in {
        c.change_id for c in state.record.changes
    }
    entry = ConfigEntry("max.message.bytes", "1048576", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", env.state, incremental_configs=[entry])
    for future in kafka_admin.incremental_alter_configs([resource]).values():
        future.result(30)
    env.start_fold()
    shown = env.wait_visible("ana", [withdraw.change_id])
    assert shown.timeline is not None
    assert shown.timeline.in_force("analytics", None, datetime.now(UTC)) is None


def test_racing_writers_lose_no_change(consent_env: ConsentEnv) -> None:
    """Defect 2: writers racing on one subject (two producers, 150 changes each, and two
    CLI processes) all land: consent-state retains every change id."""
    env = consent_env
    env.start_fold()
    written: list[str] = []
    lock = threading.Lock()

    def writer(tag: str) -> None:
        log = ChangeLog(env.kafka, env.changes, env.serde)
        try:
            for i in range(150):
                action = "GRANT" if i % 2 == 0 else "WITHDRAW"
                recipient = "client-01" if i % 3 else "client-02"
                change = env.request(
                    subject_id="rae",
                    action=action,
                    purpose="partner_sharing",
                    recipient=recipient,
                    change_id=f"{tag}-{i}",
                )
                log.append([change])
                with lock:
                    written.append(change.change_id)
        finally:
            log.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in ("w1", "w2")]
    for t in threads:
        t.start()
    cli = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "consentgate",
                "consent",
                "grant",
                "rae",
                "analytics",
                "--change-id",
                f"cli-{n}",
                "--policy",
                str(env.policy_path),
                "--changes-topic",
                env.changes,
            ],
            env={**os.environ, "CONSENTGATE_BOOTSTRAP": env.bootstrap},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for n in range(2)
    ]
    for t in threads:
        t.join(120)
    for p in cli:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out.decode()
    expected = set(written) | {"cli-0", "cli-1"}
    assert len(expected) == 302
    state = env.wait_visible("rae", sorted(expected), timeout=60)
    assert state.timeline is not None
    assert {c.change_id for c in state.timeline.record.changes} == expected
    assert state.timeline.version == 302


def test_an_erasure_is_remembered_across_restarts(consent_env: ConsentEnv) -> None:
    """Defect 3: after an erasure and a restart of the fold, a retried GRANT with the id of
    a change the erasure wiped stays wiped (the erasure marker keeps the ids)."""
    env = consent_env
    fold = env.start_fold()
    grant = env.consent("eve", "GRANT", "analytics", change_id="eve-grant-1")
    erase = env.consent("eve", "ERASE")
    assert fold.stop() == 0
    env.start_fold()
    retry = env.request(
        subject_id="eve", action="GRANT", purpose="analytics", change_id=grant.change_id
    )
    marker = env.consent("eve", "GRANT", "profiling")  # a later change: the fold got to it
    env.record(retry, wait=0)
    env.wait_visible("eve", [marker.change_id])
    env.record(new_change("eve", "GRANT", "profiling", change_id="eve-after"), wait=30)
    state = env.subject_state("eve").timeline
    assert state is not None
    assert grant.change_id in state.record.erased_change_ids
    assert grant.change_id not in {c.change_id for c in state.record.changes}
    assert state.erased_by == erase.change_id
    assert state.in_force("analytics", None, datetime.now(UTC)) is None


def test_times_are_the_services_and_grants_cannot_be_backdated(consent_env: ConsentEnv) -> None:
    """Defect 4: the caller cannot set recorded_time; a backdated grant is refused by the
    service, and one written to the log directly is dead-lettered by the fold."""
    env = consent_env
    env.start_fold()
    with pytest.raises(ValueError, match="recorded_time"):
        ChangeRequest(subject_id="bo", action="GRANT", purpose="analytics", recorded_time=1)  # type: ignore[call-arg]
    past = datetime.now(UTC) - timedelta(days=3)
    with pytest.raises(Rejected, match="before it is recorded"):
        env.request(subject_id="bo", action="GRANT", purpose="analytics", effective_time=past)
    with pytest.raises(Rejected, match="operator path"):
        env.request(subject_id="bo", action="WITHDRAW", purpose="analytics", effective_time=past)
    before = datetime.now(UTC)
    granted = env.consent("bo", "GRANT", "analytics")
    assert before - timedelta(seconds=1) <= granted.recorded_time <= datetime.now(UTC)
    sneaky = new_change("bo", "GRANT", "profiling", at=past, recorded=datetime.now(UTC))
    env.record(sneaky, wait=0)
    (letter,) = _letters(env, 1)
    assert letter["error_type"] == "BackdatedGrant"
    assert letter["stage"] == "fold"
    assert sneaky.change_id not in _ids(env, "bo")


def test_gpc_is_recorded_as_an_opt_out(consent_env: ConsentEnv) -> None:
    """Defect 5: GPC becomes WITHDRAW changes (method GPC) for every grant key the policy
    maps it to, so it holds for every later event, not just the one that carried it."""
    env = consent_env
    env.start_fold()
    env.consent("gil", "GRANT", "partner_sharing", "client-01")
    env.consent("gil", "GRANT", "analytics")
    changes = env.service.gpc("gil", actor="test")
    assert changes and all(c.method.value == "GPC" for c in changes)
    assert all(c.action is ConsentAction.WITHDRAW for c in changes)
    env.record(changes)
    timeline = env.subject_state("gil").timeline
    assert timeline is not None
    now = datetime.now(UTC)
    for change in changes:
        assert timeline.in_force(change.purpose or "", change.recipient, now) is None
    gpc_keys = {(c.purpose, c.recipient) for c in changes}
    assert ("partner_sharing", "client-01") in gpc_keys
    if ("analytics", None) not in gpc_keys:  # first-party analytics is not a sale/share
        assert timeline.in_force("analytics", None, now) is not None


def test_old_history_is_trimmed(consent_env: ConsentEnv) -> None:
    """Defect 6: a subject's timeline is bounded: 300 grant/withdraw cycles over two years
    fold into a record that keeps only what the history horizon (400 days) can need."""
    env = consent_env
    env.start_fold()
    start = datetime.now(UTC) - timedelta(days=730)
    history = [
        new_change(
            "tim",
            "GRANT" if i % 2 == 0 else "WITHDRAW",
            "analytics",
            at=start + timedelta(days=i * 2.4),
        )
        for i in range(300)
    ]
    env.record(history, wait=0)
    last = env.consent("tim", "GRANT", "profiling")
    state = env.wait_visible("tim", [last.change_id]).timeline
    assert state is not None
    horizon = datetime.now(UTC) - timedelta(days=400)
    kept = state.record.changes
    assert state.record.trimmed_before is not None
    assert state.record.trimmed_before >= horizon - timedelta(minutes=5)
    recent = [c for c in history if c.effective_time >= horizon]
    assert len(kept) <= len(recent) + 2  # + the last analytics change before it + profiling
    assert len(kept) < 200


def test_changes_fold_in_effective_order_whatever_their_arrival(consent_env: ConsentEnv) -> None:
    env = consent_env
    env.start_fold()
    t1 = datetime.now(UTC) + timedelta(minutes=1)
    t2 = t1 + timedelta(minutes=5)
    withdraw = new_change("ola", "WITHDRAW", "analytics", at=t2, recorded=datetime.now(UTC))
    grant = new_change("ola", "GRANT", "analytics", at=t1, recorded=datetime.now(UTC))
    env.record([withdraw, grant])
    timeline = env.subject_state("ola").timeline
    assert timeline is not None
    assert timeline.in_force("analytics", None, t1 + timedelta(minutes=1)) is not None
    assert timeline.in_force("analytics", None, t2 + timedelta(seconds=1)) is None
    env.record(grant, wait=0)  # a duplicate, logged again
    last = env.consent("ola", "GRANT", "profiling")
    again = env.wait_visible("ola", [last.change_id]).timeline
    assert again is not None and again.version == 3


def test_bad_records_on_the_changes_log_are_dead_lettered(consent_env: ConsentEnv) -> None:
    env = consent_env
    env.start_fold()
    good = new_change("pia", "GRANT", "analytics")
    producer = Producer({"bootstrap.servers": env.bootstrap, "partitioner": "murmur2_random"})
    producer.produce(env.changes, b"\x00garbage", b"pia")
    producer.produce(env.changes, env.serde.encode(good), b"not-pia")
    producer.produce(env.changes, None, b"pia")
    assert producer.flush(30) == 0
    env.record(good)
    kinds = sorted(str(letter["error_type"]) for letter in _letters(env, 3))
    assert kinds == ["DecodeError", "KeyMismatch", "NullValue"]
    assert _ids(env, "pia") == {good.change_id}


def test_restarts_fold_nothing_twice(consent_env: ConsentEnv) -> None:
    env = consent_env
    fold = env.start_fold()
    subjects = [f"ren-{i}" for i in range(40)]
    first = [env.request(subject_id=s, action="GRANT", purpose="analytics") for s in subjects]
    env.record(first)
    fold.stop()
    second = [
        env.request(subject_id=s, action="GRANT", purpose="profiling", change_id=f"p-{s}")
        for s in subjects
    ]
    env.record(second, wait=0)
    env.record(second[:10], wait=0)  # retried while the fold is down
    env.start_fold()
    for s in subjects:
        state = env.wait_visible(s, [f"p-{s}"])
        assert state.timeline is not None and state.timeline.version == 2
