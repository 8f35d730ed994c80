"""``consentgate replay`` on the real broker: re-judged ranges into versioned topics, the
dry-run diff, ``--live`` with retractions under the keys the live sinks hold, exactly once
across a kill -9. Every expectation is the decision rule itself (``consentgate.policy.decide``)
over the raw events and the consent log, computed here, not by the replay's code."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

from consentgate.consent.timeline import Timeline, apply
from consentgate.models.consent import ConsentChange
from consentgate.policy import Policy, PseudonymKeys, SourceEvent, decide, load_policy
from consentgate.router.partitioner import partition_for
from consentgate.router.records import sink_event_id
from consentgate_dev.demo.policygen import PolicyPlan, policy_yaml
from tests.integration.conftest import EnvFactory
from tests.integration.consent_harness import new_change
from tests.integration.router_harness import MASTER_KEY, RouterEnv
from tests.kafka_helpers import job_view, produce

pytestmark = pytest.mark.integration

KEYS = PseudonymKeys(master_key=pydantic.SecretStr(MASTER_KEY))
ROTATED = {
    "_first_party": "rotated-first-party-key-0123456789",
    "client-01": "rotated-client-01-key-0123456789",
    "client-02": "rotated-client-02-key-0123456789",
    "client-03": "rotated-client-03-key-0123456789",
}


# -- running the command --------------------------------------------------------------------
def settings_file(env: RouterEnv) -> Path:
    """The router's settings file for this env (its app id and topics)."""
    path = env.workdir / "router.yaml"
    plan = env.plan
    doc = {
        "app_id": f"router{plan.suffix}",
        "topics": {
            "consent_state": plan.state_topic,
            "consent_changes": plan.changes_topic,
            "decisions": plan.decisions_topic,
            "provisions": plan.provisions_topic,
            "dead_letters": plan.dlq_topic,
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def command(env: RouterEnv, *args: str) -> list[str]:
    return [sys.executable, "-m", "consentgate", *args, "--config", str(settings_file(env))]


def environ(env: RouterEnv, keys: dict[str, str] | None = None) -> dict[str, str]:
    out = {
        **os.environ,
        "CONSENTGATE_BOOTSTRAP": env.bootstrap,
        "CONSENTGATE_PSEUDONYM_MASTER_KEY": MASTER_KEY,
    }
    out.pop("CONSENTGATE_PSEUDONYM_KEYS", None)
    if keys is not None:
        out["CONSENTGATE_PSEUDONYM_KEYS"] = json.dumps(keys)  # explicit keys win
    return out


def run_cli(
    env: RouterEnv, *args: str, keys: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(env, *args),
        env=environ(env, keys),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def replay(
    env: RouterEnv, *args: str, policy: Path | None = None, keys: dict[str, str] | None = None
) -> dict[str, Any]:
    """``consentgate replay --json`` of the browsing source; its summary."""
    done = run_cli(
        env,
        "replay",
        *("--source", env.plan.browsing_topic, "--policy", str(policy or env.policy_path)),
        *args,
        "--json",
        keys=keys,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def write_policy(env: RouterEnv, name: str, partners: list[str]) -> Path:
    plan = PolicyPlan(partners=partners, score_partners=["client-01"], suffix=env.plan.suffix)
    path = env.workdir / name
    path.write_text(policy_yaml(plan))
    return path


@contextlib.contextmanager
def replay_topics_dropped(env: RouterEnv) -> Iterator[None]:
    """Delete the topics replays created beside the env's own at the end."""
    try:
        yield
    finally:
        own = set(env.all_topics())
        extra = [
            t
            for t in env.admin.list_topics(timeout=10).topics
            if env.plan.suffix in t and t not in own
        ]
        if extra:
            for future in env.admin.delete_topics(extra, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result(timeout=30)


# -- reading what happened ------------------------------------------------------------------
def changes(env: RouterEnv) -> list[ConsentChange]:
    return [env.serde.decode_model(m.value(), ConsentChange) for m in env.read(env.changes)]


def timelines(log: list[ConsentChange], known_at: datetime | None = None) -> dict[str, Timeline]:
    out: dict[str, Timeline] = {}
    for change in sorted(log, key=lambda c: c.recorded_time):
        if known_at is None or change.recorded_time <= known_at:
            out[change.subject_id] = apply(out.get(change.subject_id), change)
    return out


def source_events(env: RouterEnv, policy: Policy) -> list[SourceEvent]:
    source = policy.source("browsing")
    return [
        SourceEvent.from_record(source, env.serde.decode(m.value()).value)
        for m in env.read(env.plan.browsing_topic)
    ]


def rule_now(policy: Policy, events: list[SourceEvent], log: list[ConsentChange]) -> dict:
    """sink name -> event ids the rule allows now, on the whole consent log."""
    now = datetime.now(UTC)
    known = timelines(log)
    return {
        sink.name: {
            e.event_id
            for e in events
            if decide(e, known.get(e.subject_id or ""), sink, now, policy.defaults).allowed
        }
        for sink in policy.sinks_for("browsing")
    }


def rule_at_event_time(
    policy: Policy, events: list[SourceEvent], log: list[ConsentChange]
) -> dict[str, set[str | None]]:
    """sink name -> event ids allowed on the consent known at each event's time, judged then;
    an erasure known now wins (a replay never re-creates erased data)."""
    full = timelines(log)
    out: dict[str, set[str | None]] = {s.name: set() for s in policy.sinks_for("browsing")}
    for e in events:
        t = e.event_time
        assert t is not None
        now = full.get(e.subject_id or "")
        erased_at = now.erased_at if now is not None else None
        if now is not None and erased_at is not None and (now.erased or t < erased_at):
            continue
        then = timelines(log, known_at=t).get(e.subject_id or "")
        for sink in policy.sinks_for("browsing"):
            if decide(e, then, sink, t, policy.defaults).allowed:
                out[sink.name].add(e.event_id)
    return out


def held(env: RouterEnv, topic: str) -> list[tuple[bytes, str, dict[str, bytes]]]:
    """(key, evidence.event_id, headers) of each data record of ``topic``."""
    out = []
    for m in env.read(topic, timeout=10):
        if m.value() is not None:
            event_id = str(env.serde.decode(m.value()).value["evidence"]["event_id"])
            out.append((m.key(), event_id, dict(m.headers() or [])))
    return out


def as_sink_ids(policy: Policy, sink: str, ids: set[Any], keys: PseudonymKeys = KEYS) -> set:
    """Event ids as ``sink`` names them (recipient-scoped on partner sinks)."""
    return {sink_event_id(policy.sink(sink), e, keys) for e in ids}


def partitions(env: RouterEnv, topic: str) -> int:
    return len(env.admin.list_topics(topic, timeout=10).topics[topic].partitions)


def _events(env: RouterEnv, subjects: list[str], n: int) -> None:
    """``n`` browsing events round robin over ``subjects``, produced in one go."""
    records = []
    for i in range(n):
        s = subjects[i % len(subjects)]
        datum = job_view(s, job_id=f"job-{i}")
        records.append((s.encode(), env.serde.encode(datum, "BrowsingEvent")))
    produce(env.bootstrap, env.plan.browsing_topic, records)


# -- the tests ------------------------------------------------------------------------------
@pytest.mark.timeout(420)
def test_replay_after_policy_change_and_withdrawals_is_what_the_rule_allows(
    router_env_factory: EnvFactory,
) -> None:
    env = router_env_factory(partners=["client-01", "client-02", "client-03"])
    old = write_policy(env, "old.yaml", ["client-01", "client-02"])
    new = write_policy(env, "new.yaml", ["client-01", "client-03", "client-04"])
    env.policy_path.write_text(old.read_text())  # the router runs the old policy
    analytics, p1, p2, p3 = (
        ("analytics", None),
        ("partner_sharing", "client-01"),
        ("partner_sharing", "client-02"),
        ("partner_sharing", "client-03"),
    )
    grants = {
        "ann": [analytics, p1, p2],
        "ben": [analytics, p2, p3],
        "cyd": [p1],
        "dee": [analytics, p1],
    }
    for subject, keys in grants.items():
        for purpose, recipient in keys:
            env.consent(subject, "GRANT", purpose, recipient)
    # client-04 is not in the consent service's policy: written to the log directly
    env.append(new_change("ann", "GRANT", "partner_sharing", "client-04"))
    env.start_router()
    first = {s: env.browse(s, 3) for s in ("ann", "ben", "cyd", "dee", "eve")}
    env.decisions_by_event(15)
    env.consent("cyd", "WITHDRAW", "partner_sharing", "client-01")
    env.consent("dee", "ERASE")
    later = env.browse("cyd", 2) + env.browse("ann", 2)
    env.decisions_by_event(19)
    policy = load_policy(new)
    with replay_topics_dropped(env):
        summary = replay(env, "--from", "earliest", "--consent", "now", "--into", "v1", policy=new)
        log, events = changes(env), source_events(env, policy)
        assert len(events) == 19 and summary["events"] == 19
        allowed = rule_now(policy, events, log)
        assert allowed["partner.client-03.browsing"] == set(first["ben"])  # a sink added
        assert allowed["partner.client-01.browsing"] == set(first["ann"] + later[2:])
        for sink in policy.sinks_for("browsing"):
            topic = f"{sink.topic}.v1"
            got = [event_id for _, event_id, _ in held(env, topic)]
            assert sorted(got) == sorted(as_sink_ids(policy, sink.name, allowed[sink.name]))
            assert summary["sinks"][sink.name]["allowed"] == len(allowed[sink.name])
            assert partitions(env, topic) == 3  # the live topic's, or the source's (client-04)
        assert not env.admin.list_topics(timeout=10).topics.get(
            env.plan.partner_topic("client-02") + ".v1"
        )  # a partner removed gets nothing
        decided = Counter(
            str(env.serde.decode(m.value()).value["event_id"])
            for m in env.read(env.decisions + ".v1")
        )
        assert decided == Counter(e.event_id for e in events)
        provided = Counter(
            (v["subject_id"], v["sink"])
            for v in (env.serde.decode(m.value()).value for m in env.read(env.provisions + ".v1"))
        )
        assert provided == {
            ("ann", "partner.client-01.browsing"): 1,
            ("ann", "partner.client-04.browsing"): 1,
            ("ben", "partner.client-03.browsing"): 1,
        }
        # event time: cyd's first events were allowed when they happened; dee stays erased
        summary = replay(
            env, "--from", "earliest", "--consent", "event-time", "--into", "v2", policy=new
        )
        then = rule_at_event_time(policy, events, log)
        assert set(first["cyd"]) <= then["partner.client-01.browsing"]
        assert not set(first["dee"]) & then["analytics"]
        for sink in policy.sinks_for("browsing"):
            got = [event_id for _, event_id, _ in held(env, f"{sink.topic}.v2")]
            assert sorted(got) == sorted(as_sink_ids(policy, sink.name, then[sink.name]))
        # the live topics were not touched
        live = held(env, env.plan.partner_topic("client-03"))
        assert live == []


def _committed(bootstrap: str, group: str, topic: str, count: int) -> int:
    return sum(_committed_at(bootstrap, group, topic, count).values())


def _committed_at(bootstrap: str, group: str, topic: str, count: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(count)]
        return {tp.partition: max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10)}
    finally:
        consumer.close()


@pytest.mark.timeout(420)
def test_replay_killed_and_restarted_writes_every_record_once(
    router_env_factory: EnvFactory,
) -> None:
    env = router_env_factory(partners=["client-01"])
    subjects = [f"k{i:02d}" for i in range(40)]
    for i, s in enumerate(subjects):
        if i % 2 == 0:
            env.append(new_change(s, "GRANT", "analytics"))
            env.append(new_change(s, "GRANT", "partner_sharing", "client-01"))
    env.settle()
    _events(env, subjects, 6000)
    args = [
        *("replay", "--source", env.plan.browsing_topic, "--policy", str(env.policy_path)),
        *("--from", "earliest", "--consent", "now", "--into", "k", "--id", "kill-test"),
    ]
    with replay_topics_dropped(env):
        log = (env.workdir / "replay-1.log").open("wb")
        proc = subprocess.Popen(
            [*command(env, *args), "--rate", "600", "--commit-interval", "0.2"],
            env=environ(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        group = "consentgate-replay-kill-test"
        while _committed(env.bootstrap, group, env.plan.browsing_topic, 3) < 1500:
            assert proc.poll() is None, (env.workdir / "replay-1.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the replay committed nothing"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)  # kill -9 mid-run
        proc.wait(30)
        log.close()
        assert _committed(env.bootstrap, group, env.plan.browsing_topic, 3) < 6000
        done = run_cli(env, *args, "--json")
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads(done.stdout)
        assert summary["resumed"] and 0 < summary["events"] < 6000
        policy = load_policy(env.policy_path)
        events = source_events(env, policy)
        allowed = rule_now(policy, events, changes(env))
        assert len(allowed["analytics"]) == 3000
        for sink in ("analytics", "partner.client-01.browsing"):
            topic = policy.sink(sink).topic + ".k"
            got = Counter(event_id for _, event_id, _ in held(env, topic))
            assert got == Counter(as_sink_ids(policy, sink, allowed[sink]))  # each once
        decided = Counter(
            str(env.serde.decode(m.value()).value["event_id"])
            for m in env.read(env.decisions + ".k", timeout=10)
        )
        assert decided == Counter(e.event_id for e in events)
        provided = Counter(
            env.serde.decode(m.value()).value["subject_id"]
            for m in env.read(env.provisions + ".k", timeout=10)
        )
        assert provided == Counter(subjects[::2])  # one per subject, recipient, sink, day
        again = run_cli(env, *args, "--json")
        assert json.loads(again.stdout)["complete_before"]


@pytest.mark.timeout(300)
def test_a_withdrawal_while_replaying_is_retracted_after_the_replayed_data(
    router_env_factory: EnvFactory,
) -> None:
    env = router_env_factory(partners=["client-01"])
    subjects = [f"w{i}" for i in range(10)]
    for s in subjects:
        env.append(new_change(s, "GRANT", "analytics"))
    env.settle()
    _events(env, subjects, 3000)
    args = [
        *("replay", "--source", env.plan.browsing_topic, "--policy", str(env.policy_path)),
        *("--from", "earliest", "--consent", "now", "--into", "w", "--id", "withdraw-test"),
        *("--rate", "400", "--commit-interval", "0.2", "--json"),
    ]
    with replay_topics_dropped(env):
        proc = subprocess.Popen(
            command(env, *args), env=environ(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        group = "consentgate-replay-withdraw-test"
        while _committed(env.bootstrap, group, env.plan.browsing_topic, 3) < 300:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        # a subject some of whose events the replay has committed already withdraws
        at = _committed_at(env.bootstrap, group, env.plan.browsing_topic, 3)
        who = next(s for s in subjects if at[partition_for(s.encode(), 3)] > 0)
        env.consent(who, "WITHDRAW", "analytics")  # while the replay runs
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-3000:]
        summary = json.loads(out)
        assert summary["withdrawn_while_running"] == 1, err.decode()[-3000:]
        assert summary["events"] == 3000
        key = KEYS.pseudonym("_first_party", who).encode()
        mine = [m for m in env.read(env.plan.analytics_topic + ".w") if m.key() == key]
        nulls = [m.value() is None for m in mine]
        assert nulls.index(True) > 0  # its data first, then the retraction
        assert nulls[nulls.index(True) :] == [True]  # and none of its data after it
        assert len({m.partition() for m in mine}) == 1
        (retraction,) = env.retractions(env.plan.analytics_topic + ".w")
        assert retraction[1]["cg-retraction"] == b"withdrawn"  # the router's own record


@pytest.mark.timeout(300)
def test_dry_run_reports_the_difference_and_writes_nothing(
    router_env_factory: EnvFactory,
) -> None:
    env = router_env_factory(partners=["client-01", "client-02", "client-03"])
    old = write_policy(env, "old.yaml", ["client-01", "client-02"])
    new = write_policy(env, "new.yaml", ["client-01", "client-02", "client-03"])
    env.policy_path.write_text(old.read_text())
    env.consent("amy", "GRANT", "analytics")
    env.consent("amy", "GRANT", "partner_sharing", "client-01")
    env.consent("amy", "GRANT", "partner_sharing", "client-03")
    env.consent("bob", "GRANT", "partner_sharing", "client-01")
    router = env.start_router()
    amy, bob = env.browse("amy", 2), env.browse("bob", 3)
    env.decisions_by_event(5)
    router.stop()
    env.consent("bob", "WITHDRAW", "partner_sharing", "client-01")  # no router: not retracted
    before = set(env.admin.list_topics(timeout=10).topics)
    summary = replay(env, "--from", "earliest", "--consent", "now", "--dry-run", policy=new)
    sinks = summary["sinks"]
    assert summary["mode"] == "dry-run"
    p1 = sinks["partner.client-01.browsing"]
    assert (p1["added"], p1["unchanged"], p1["retracted"], p1["retraction_keys"]) == (0, 2, 3, 1)
    assert p1["denied"] == {"withdrawn": 3}
    p3 = sinks["partner.client-03.browsing"]
    assert (p3["added"], p3["unchanged"], p3["retracted"]) == (2, 0, 0)
    a = sinks["analytics"]
    assert (a["added"], a["unchanged"], a["retracted"], a["allowed"]) == (0, 2, 0, 2)
    assert sinks["partner.client-02.browsing"]["denied"] == {"not_granted_at_event_time": 5}
    assert set(env.admin.list_topics(timeout=10).topics) == before  # nothing created
    assert env.retractions(env.plan.partner_topic("client-01")) == []
    assert len(held(env, env.plan.partner_topic("client-01"))) == 5
    group = f"consentgate-replay-{summary['replay_id']}"
    assert _committed(env.bootstrap, group, env.plan.browsing_topic, 3) == 0
    assert set(amy) | set(bob)


@pytest.mark.timeout(420)
def test_live_retracts_under_the_keys_the_sink_holds_also_after_a_key_rotation(
    router_env_factory: EnvFactory,
) -> None:
    env = router_env_factory(partners=["client-01", "client-02"])
    for s in ("sam", "sue", "tom"):
        env.consent(s, "GRANT", "analytics")
        env.consent(s, "GRANT", "partner_sharing", "client-01")
    router = env.start_router()
    events = {s: env.browse(s, 2) for s in ("sam", "sue", "tom")}
    env.decisions_by_event(6)
    router.stop()
    partner = env.plan.partner_topic("client-01")
    policy = load_policy(env.policy_path)
    sink = policy.sink("partner.client-01.browsing")
    old_key = {s: KEYS.pseudonym("client-01", s).encode() for s in events}
    assert {k for k, _, _ in held(env, partner)} == set(old_key.values())

    # a withdrawal the router did not see: the live run retracts it, nothing else changes
    env.consent("sam", "WITHDRAW", "partner_sharing", "client-01")
    summary = replay(env, "--from", "earliest", "--consent", "now", "--live", "--id", "live-1")
    retracted = env.retractions(partner)
    assert [k for k, _ in retracted] == [old_key["sam"]]
    headers = retracted[0][1]
    assert headers["cg-retraction"] == b"replay"
    assert headers["cg-reason"] == b"withdrawn"
    assert headers["cg-purpose"] == b"partner_sharing"
    assert headers["cg-policy-version"] == policy.version.encode()
    assert headers["cg-consent-change-id"]
    assert summary["sinks"]["partner.client-01.browsing"]["unchanged"] == 4
    assert summary["sinks"]["analytics"]["unchanged"] == 6
    assert len(held(env, partner)) == 6  # nothing written twice
    assert len(env.read(env.provisions)) == 3  # nothing provided twice

    # keys rotated, then another withdrawal and a new event: the retraction goes to the key
    # the sink holds sue's data by, the new event to tom's new key
    env.consent("sue", "WITHDRAW", "partner_sharing", "client-01")
    (fresh,) = env.browse("tom")
    rotated = PseudonymKeys({k: pydantic.SecretStr(v) for k, v in ROTATED.items()})
    summary = replay(
        env, "--from", "earliest", "--consent", "now", "--live", "--id", "live-2", keys=ROTATED
    )
    retracted = env.retractions(partner)
    assert Counter(k for k, _ in retracted) == Counter([old_key["sam"], old_key["sue"]])
    assert rotated.pseudonym("client-01", "sue").encode() not in {k for k, _ in retracted}
    after = held(env, partner)
    new_tom = [e for k, e, _ in after if k == rotated.pseudonym("client-01", "tom").encode()]
    assert sink_event_id(sink, fresh, rotated) in new_tom
    analytics = held(env, env.plan.analytics_topic)
    assert Counter(e for _, e, _ in analytics) == Counter(
        [*(e for ids in events.values() for e in ids), fresh]
    )
    assert env.retractions(env.plan.analytics_topic) == []  # analytics consent stands
    assert len(env.read(env.provisions)) == 3  # tom was provided to client-01 today already

    # live again: it holds everything it should, so nothing is written
    counts = {t: len(env.read(t, timeout=10)) for t in (partner, env.plan.analytics_topic)}
    summary = replay(
        env, "--from", "earliest", "--consent", "now", "--live", "--id", "live-3", keys=ROTATED
    )
    assert {t: len(env.read(t, timeout=10)) for t in counts} == counts
    assert summary["sinks"]["partner.client-01.browsing"]["added"] == 0
