"""The router on a real broker, run as a subprocess: consent enforced between raw and sinks."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka.admin import NewTopic

from tests.integration.conftest import EnvFactory
from tests.integration.consent_harness import new_change
from tests.integration.router_harness import RouterEnv, wait_for

pytestmark = pytest.mark.integration


def test_consented_vs_not_and_partner_specific(router_env: RouterEnv) -> None:
    env = router_env
    env.consent("alice", "GRANT", "analytics")
    env.consent("alice", "GRANT", "partner_sharing", "client-01")
    env.consent("bob", "GRANT", "partner_sharing", "client-02")
    router = env.start_router()
    alice = env.browse("alice", 3)
    bob = env.browse("bob", 2)
    carol = env.browse("carol", 2)  # unknown subject
    decisions = env.decisions_by_event(7)
    analytics = set(env.sink_event_ids(env.plan.analytics_topic))
    p1 = set(env.sink_event_ids(env.plan.partner_topic("client-01")))
    p2 = set(env.sink_event_ids(env.plan.partner_topic("client-02")))
    assert analytics == set(alice)
    assert p1 == set(alice)
    assert p2 == set(bob)
    for e in carol:
        assert set(decisions[e].values()) == {"no_consent_record"}
    assert decisions[bob[0]]["partner.client-01.browsing"] == "not_granted_at_event_time"
    provisions = env.read(env.provisions, timeout=10)
    recipients = sorted(env.serde.decode(m.value()).value["recipient_id"] for m in provisions)
    assert recipients == ["client-01", "client-02"]  # one per subject, recipient and day
    metrics = router.metrics()
    assert 'consentgate_sink_outcomes_total{reason="allowed",sink="analytics"} 3.0' in metrics
    assert "consentgate_consent_view_lag{" in metrics
    assert "consentgate_ready 1.0" in metrics


def test_withdrawal_mid_stream_stops_delivery_and_retracts(router_env: RouterEnv) -> None:
    env = router_env
    env.consent("dana", "GRANT", "partner_sharing", "client-01")
    env.start_router()
    before = env.browse("dana", 3)
    env.decisions_by_event(3)
    env.consent("dana", "WITHDRAW", "partner_sharing", "client-01")
    time.sleep(1.0)  # the target: a withdrawal is enforced within a second
    after = env.browse("dana", 3)
    decisions = env.decisions_by_event(6)
    delivered = env.sink_event_ids(env.plan.partner_topic("client-01"))
    assert set(delivered) == set(before)
    for e in after:
        assert decisions[e]["partner.client-01.browsing"] == "not_granted_at_event_time"
    retractions = wait_for(lambda: env.retractions(env.plan.partner_topic("client-01")))
    (key, headers) = retractions[0]
    assert headers["cg-retraction"] == b"withdrawn"
    delivered_keys = {
        m.key() for m in env.read(env.plan.partner_topic("client-01")) if m.value() is not None
    }
    assert delivered_keys == {key}  # the retraction names the key the sink knows dana by
    # the score sink of client-01 needs the same grant: retracted too
    assert env.retractions(env.plan.partner_topic("client-01", "scores"))


def test_consent_written_a_moment_after_the_event_is_waited_for(router_env: RouterEnv) -> None:
    """The event happens at t; its consent (effective before t) reaches Kafka only after the
    event did, but before t: the gate waits for the view to reach t and then allows."""
    env = router_env
    # the fold takes erin's partition (fence, load) on its first change there, which can
    # take seconds on a busy machine: take it before the clock starts (profiling: no effect
    # on the analytics decision)
    env.consent("erin", "GRANT", "profiling")
    env.start_router(consent_wait=5.0)
    t = datetime.now(UTC) + timedelta(seconds=2)  # an event stamped 2 s ahead (clock skew)
    (event,) = env.browse("erin", at=t)
    time.sleep(0.5)
    env.consent("erin", "GRANT", "analytics", at=t - timedelta(seconds=1))
    decisions = env.decisions_by_event(1)
    assert decisions[event]["analytics"] == "allowed"
    assert env.sink_event_ids(env.plan.analytics_topic) == [event]


def test_slow_consent_topic_never_leaks(router_env: RouterEnv) -> None:
    """A backlog on the consent topic hides a withdrawal from the view: an event after the
    withdrawal must wait and be denied (stale), never judged on the old view."""
    env = router_env
    env.consent("fay", "GRANT", "analytics")
    env.start_router(consent_wait=0.5)
    (warm,) = env.browse("fay")
    assert env.decisions_by_event(1)[warm]["analytics"] == "allowed"
    backlog = [new_change(f"bulk-{i}", "GRANT", "analytics") for i in range(60_000)]
    env.append(backlog, settle=False)  # a backlog the fold works through
    env.append(new_change("fay", "WITHDRAW", "analytics"), settle=False)
    (late,) = env.browse("fay")
    decisions = env.decisions_by_event(2, timeout=120)
    assert decisions[late]["analytics"] in {"consent_state_stale", "not_granted_at_event_time"}
    assert env.sink_event_ids(env.plan.analytics_topic) == [warm]


def test_erasure_denies_everything_and_retracts_everywhere(router_env: RouterEnv) -> None:
    env = router_env
    env.consent("gus", "GRANT", "analytics")
    env.consent("gus", "GRANT", "partner_sharing", "client-02")
    env.start_router()
    first = env.browse("gus")
    env.decisions_by_event(1)
    env.consent("gus", "ERASE")
    time.sleep(1.0)
    second = env.browse("gus")
    decisions = env.decisions_by_event(2)
    assert set(decisions[second[0]].values()) == {"erased"}
    assert env.sink_event_ids(env.plan.analytics_topic) == first
    for topic in env.plan.sink_topics():
        retractions = wait_for(lambda t=topic: env.retractions(t))
        assert {h["cg-retraction"] for _, h in retractions} == {b"erased"}


def test_bad_bytes_go_to_the_dead_letter_topic_and_the_router_goes_on(
    router_env: RouterEnv,
) -> None:
    env = router_env
    env.consent("hal", "GRANT", "analytics")
    router = env.start_router()
    bad = [
        (b"hal", b""),
        (b"hal", b"\x00\x00\x00\x00\x07junk"),
        (b"hal", b'{"json": 1}'),
        (None, b"\xc3\x01\x00\x00\x00\x00\x00\x00\x00\x00"),
    ]
    env.raw(env.plan.browsing_topic, bad)
    future = env.browse("hal", at=datetime.now(UTC) + timedelta(hours=2))  # beyond the skew
    good = env.browse("hal", 2)
    decisions = env.decisions_by_event(2)
    assert set(good) <= set(decisions)
    letters = env.read(env.dlq, expected=5, timeout=30)
    values = [env.serde.decode(m.value()).value for m in letters]
    raw_values = [v["raw_value"] for v in values]
    assert all(b in raw_values for _, b in bad)
    assert len(values) == 5  # four undecodable + one event beyond the clock skew
    assert {v["stage"] for v in values} == {"decode", "validate"}
    assert all(v["reason"] and v["source_topic"] == env.plan.browsing_topic for v in values)
    assert future[0] not in decisions
    assert router.proc.poll() is None


def test_profiling_score_needs_both_grants(router_env: RouterEnv) -> None:
    env = router_env
    env.consent("ivy", "GRANT", "partner_sharing", "client-01")  # sharing only
    env.consent("jon", "GRANT", "partner_sharing", "client-01")
    env.consent("jon", "GRANT", "profiling")
    env.start_router()
    ivy = env.score("ivy")
    jon = env.score("jon")
    decisions = env.decisions_by_event(2)
    assert decisions[ivy]["partner.client-01.scores"] == "missing_purpose"
    assert decisions[jon]["partner.client-01.scores"] == "allowed"
    assert env.sink_event_ids(env.plan.partner_topic("client-01", "scores")) == [jon]


def test_router_killed_and_restarted_loses_and_leaks_nothing(
    router_env_factory: EnvFactory,
) -> None:
    env = router_env_factory()
    subjects = [f"k{i}" for i in range(40)]
    for i, s in enumerate(subjects):
        if i % 2 == 0:
            env.append(new_change(s, "GRANT", "partner_sharing", "client-01"))
    first = env.start_router()
    events: dict[str, str] = {}
    for round_ in range(5):
        for s in subjects:
            for e in env.browse(s):
                events[e] = s
        if round_ == 1:
            first.stop(signal.SIGKILL)  # crash mid-stream
            env.start_router()
    decisions = env.decisions_by_event(len(events), timeout=120)
    assert set(decisions) == set(events)  # nothing lost
    delivered = env.sink_event_ids(env.plan.partner_topic("client-01"))
    consented = {e for e, s in events.items() if int(s[1:]) % 2 == 0}
    assert set(delivered) == consented  # nothing leaked, nothing missing
    # re-deliveries after the crash are duplicates of the same event ids, never new ones
    assert len(delivered) >= len(consented)


def test_router_refuses_to_start_when_topics_are_not_copartitioned(
    router_env: RouterEnv,
) -> None:
    env = router_env
    env.admin.delete_topics([env.changes], operation_timeout=30)[env.changes].result(30)
    wait_for(lambda: [1] if env.changes not in env.admin.list_topics(timeout=10).topics else [])
    futures = env.admin.create_topics(
        [NewTopic(env.changes, num_partitions=1, replication_factor=1)]
    )
    futures[env.changes].result(30)
    router = env.start_router(wait_ready=False)
    assert router.proc.wait(60) != 0
    log = router.log.read_text()
    assert "partition" in log and env.changes in log
    assert "Traceback" not in log
