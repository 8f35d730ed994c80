"""The leak paths and losses found in the first router (issue 10), each on the real broker.

Every test here failed on the faust router (v1) and passes on the transactional loop (v2):
1. a retraction written before data it retracts (the view lagged the changes log);
2. an event on another partition than its subject's judged on the wrong view;
3. an input whose dead letter is too large for Kafka lost (logged and committed);
4. head-of-line denial: one stale event on an idle consent partition denied those after it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from consentgate.router.partitioner import partition_for
from tests.integration.consent_harness import new_change
from tests.integration.router_harness import RouterEnv, wait_for

pytestmark = pytest.mark.integration


def _browse_one(env: RouterEnv, subject: str, *, key: bytes, partition: int) -> str:
    event_id = uuid.uuid4()
    datum = {
        "event_id": event_id,
        "subject_id": subject,
        "event_time": datetime.now(UTC),
        "event_type": "JOB_VIEW",
        "job_id": "job-1",
        "company_id": "client-01",
    }
    producer = Producer({"bootstrap.servers": env.bootstrap})
    producer.produce(
        env.plan.browsing_topic, env.serde.encode(datum, "BrowsingEvent"), key, partition
    )
    assert producer.flush(30) == 0
    return str(event_id)


def test_retraction_never_precedes_data_it_retracts(router_env: RouterEnv) -> None:
    """The withdrawal reaches consent.changes seconds before consent.state shows it (a slow
    consent fold). v1 gave up waiting after max(consent_wait, 1 s), retracted, and kept
    delivering the subject's events judged on the old view after the retraction."""
    env = router_env
    env.consent("dana", "GRANT", "partner_sharing", "client-01")
    env.start_router(consent_wait=1.0)
    before = env.browse("dana", 3)
    env.decisions_by_event(3)
    withdraw = new_change("dana", "WITHDRAW", "partner_sharing", "client-01")
    env.stop_fold()  # the fold is down: consent.changes has the withdrawal, the state not
    env.append(withdraw, settle=False)
    during: list[str] = []
    for _ in range(8):  # 3.2 s of events while the view still holds the grant
        during += env.browse("dana", 2)
        time.sleep(0.4)
    env.start_fold()  # the fold catches up: consent.state shows the withdrawal
    env.consents.wait_visible("dana", [withdraw.change_id])
    after = env.browse("dana", 2)
    decisions = env.decisions_by_event(len(before) + len(during) + len(after))
    sink = env.plan.partner_topic("client-01")
    records = [m for m in env.read(sink, timeout=10) if m.key() is not None]
    retraction_at = [i for i, m in enumerate(records) if m.value() is None]
    assert retraction_at, "no retraction written"
    first = retraction_at[0]
    late = [m for m in records[first:] if m.value() is not None]
    assert not late, f"{len(late)} records of dana delivered after her retraction"
    for e in during + after:  # nothing judged on the view that missed the withdrawal
        assert decisions[e]["partner.client-01.browsing"] != "allowed"
    assert set(env.sink_event_ids(sink)) == set(before)


def test_event_on_another_partition_than_its_subject_is_denied_as_misrouted(
    router_env: RouterEnv,
) -> None:
    env = router_env
    env.consent("mia", "GRANT", "analytics")
    env.start_router()
    expected = partition_for(b"mia", env.partitions)
    wrong = (expected + 1) % env.partitions
    # keyed by another id (a CRC32 or session-keyed producer): lands on a partition whose
    # view does not hold mia's consent
    event = _browse_one(env, "mia", key=b"session-42", partition=wrong)
    decisions = env.decisions_by_event(1)
    assert set(decisions[event].values()) == {"misrouted"}
    letters = [env.serde.decode(m.value()).value for m in env.read(env.dlq, expected=1)]
    assert len(letters) == 1
    assert letters[0]["error_type"] == "Misrouted"
    assert f"expected_partition={expected}" in letters[0]["reason"]
    assert letters[0]["source_partition"] == wrong
    assert env.sink_event_ids(env.plan.analytics_topic, timeout=3) == []
    # the same event on the right partition is allowed
    good = _browse_one(env, "mia", key=b"mia", partition=expected)
    assert env.decisions_by_event(2)[good]["analytics"] == "allowed"
    assert "consentgate_dead_letters_total 1.0" in env.routers[0].metrics()


def test_input_whose_dead_letter_is_too_large_still_gets_its_dead_letter(
    router_env: RouterEnv,
) -> None:
    """v1: the ~1 MB dead letter was refused by Kafka, logged, and the input committed."""
    env = router_env
    env.consent("olga", "GRANT", "analytics")
    router = env.start_router()
    # accepted by the raw topic (broker limit 1,048,588); its dead letter is larger than
    # what a producer may send by default (1,000,000)
    garbage = os.urandom(1_000_000)
    producer = Producer({"bootstrap.servers": env.bootstrap, "message.max.bytes": 1_048_000})
    producer.produce(env.plan.browsing_topic, garbage, b"olga")
    assert producer.flush(30) == 0
    (event,) = env.browse("olga")
    decisions = env.decisions_by_event(1)
    assert decisions[event]["analytics"] == "allowed"  # the router kept running
    letters = [env.serde.decode(m.value()).value for m in env.read(env.dlq, expected=1)]
    assert len(letters) == 1
    letter = letters[0]
    assert letter["error_type"] == "RecordTooLarge"
    assert "sha256" in letter["reason"] and "truncated" in letter["reason"]
    assert letter["raw_value"] == garbage[: len(letter["raw_value"])]
    assert 0 < len(letter["raw_value"]) < len(garbage)
    assert router.proc.poll() is None


def test_one_stale_event_does_not_deny_the_events_after_it(router_env: RouterEnv) -> None:
    """v1: after one event went stale on an idle consent partition, every later event of
    that partition was denied at once (50 of 50)."""
    env = router_env
    env.consent("nina", "GRANT", "analytics")
    env.start_router(consent_wait=1.0)
    # 4 s ahead (within the policy's clock skew): no view observed at its time can exist
    # within the 1 s wait, so it is denied as stale
    (ahead,) = env.browse("nina", at=datetime.now(UTC) + timedelta(seconds=4))
    env.decisions_by_event(1)  # denied after its wait
    later: list[str] = []
    for _ in range(10):  # then events as they happen, on the same (idle) consent partition
        later += env.browse("nina", 5)
        time.sleep(0.1)
    decisions = env.decisions_by_event(51)
    assert decisions[ahead]["analytics"] == "consent_state_stale"
    reasons = [decisions[e]["analytics"] for e in later]
    assert reasons.count("allowed") == 50, reasons


def test_missing_output_topic_refuses_to_start_with_a_clear_error(router_env: RouterEnv) -> None:
    env = router_env
    env.admin.delete_topics([env.dlq])[env.dlq].result(timeout=30)
    time.sleep(1.0)
    router = env.start_router(wait_ready=False)
    assert router.proc.wait(60) == 78
    assert "output topics missing" in router.log.read_text()
    assert env.dlq in router.log.read_text()


def test_events_on_a_consent_partition_without_records_are_judged_not_stale(
    router_env: RouterEnv,
) -> None:
    """An idle consent partition (here: one that never held a record) must not look stale:
    its subjects' events are judged (no consent record), not denied as consent_state_stale."""
    env = router_env
    env.consent("nina", "GRANT", "analytics")
    taken = partition_for(b"nina", env.partitions)
    subject = next(
        s
        for s in (f"zed{i}" for i in range(100))
        if partition_for(s.encode(), env.partitions) != taken
    )
    env.start_router(consent_wait=1.0)
    events: list[str] = []
    for _ in range(10):
        events += env.browse(subject, 5)
        time.sleep(0.1)
    decisions = env.decisions_by_event(50)
    reasons = Counter(decisions[e]["analytics"] for e in events)
    assert reasons == {"no_consent_record": 50}, reasons


def test_withdrawal_on_another_partition_than_its_subject_is_dead_lettered(
    router_env: RouterEnv,
) -> None:
    """No consent view can ever show a change that sits on another partition than its
    subject's: it is dead-lettered instead of holding the changes partition forever."""
    env = router_env
    env.consent("ivy", "GRANT", "analytics")
    env.start_router()
    expected = partition_for(b"ivy", env.partitions)
    wrong = (expected + 1) % env.partitions
    withdraw = new_change("ivy", "WITHDRAW", "analytics")
    producer = Producer({"bootstrap.servers": env.bootstrap})
    producer.produce(env.changes, env.serde.encode(withdraw), b"ivy", wrong)
    assert producer.flush(30) == 0
    letters = [env.serde.decode(m.value()).value for m in env.read(env.dlq, expected=2)]
    letters = [letter for letter in letters if letter["stage"] == "consent"]  # the router's
    assert len(letters) == 1  # (the fold dead-letters it too, stage "fold")
    assert letters[0]["error_type"] == "Misrouted"
    assert withdraw.change_id in letters[0]["reason"]
    # the changes partition goes on: a withdrawal of a subject who lives there is retracted
    other = next(
        s
        for s in (f"ivy{i}" for i in range(200))
        if partition_for(s.encode(), env.partitions) == wrong
    )
    env.consent(other, "GRANT", "analytics")
    env.browse(other)
    env.decisions_by_event(1)
    env.consent(other, "WITHDRAW", "analytics")
    wait_for(lambda: env.retractions(env.plan.analytics_topic), timeout=30)  # else stuck
