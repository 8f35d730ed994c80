"""Exactly-once under faults, checked by reading every output topic (read_committed), never
with the router's own counters, and by the independent audit: kill -9 mid-transaction and
rebalances mid-stream. Sizes: ``make test`` runs the short version, ``make test-faults``
(``CONSENTGATE_FAULTS=full``) the full one (10 kills over 200,000 events); each run writes
its report (tests/integration/faults.py).

Every raw event must end with exactly one decision record, every allowed (event, sink) with
exactly one sink record, every (subject, recipient, sink, day) with exactly one provision,
and nothing else: no duplicate, no missing, no leaked record.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from tests.integration import faults
from tests.integration.conftest import EnvFactory
from tests.integration.consent_harness import new_change
from tests.integration.faults import audit, scale, write_report
from tests.integration.router_harness import RouterEnv
from tests.kafka_helpers import job_view

pytestmark = [pytest.mark.integration, pytest.mark.faults, faults.TIMEOUT]

SUBJECTS = 2_000


def _grants(i: int) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    if i % 2 == 0:
        out.append(("analytics", None))
    if i % 3 == 0:
        out.append(("partner_sharing", "client-01"))
    if i % 5 == 0:
        out.append(("partner_sharing", "client-02"))
    return out


def _setup(env: RouterEnv, events: int, tag: str) -> dict[str, int]:
    """Consent for SUBJECTS subjects, then ``events`` browsing events; event id -> subject no."""
    for i in range(SUBJECTS):
        for purpose, recipient in _grants(i):
            env.append(new_change(f"{tag}{i}", "GRANT", purpose, recipient))
    now = datetime.now(UTC)
    ids: dict[str, int] = {}
    records = []
    for n in range(events):
        i = n % SUBJECTS
        datum = job_view(f"{tag}{i}", now)
        ids[str(datum["event_id"])] = i
        records.append((f"{tag}{i}".encode(), env.serde.encode(datum, "BrowsingEvent")))
    env.raw(env.plan.browsing_topic, records)
    env.produced += list(ids)  # so that sink_event_ids maps partner-scoped ids back
    return ids


def _check_exactly_once(env: RouterEnv, ids: dict[str, int]) -> dict[str, int]:
    decisions = Counter(
        str(env.serde.decode(m.value()).value["event_id"])
        for m in env.read(env.decisions, expected=len(ids), timeout=120)
    )
    assert set(decisions) == set(ids), f"{len(set(ids) - set(decisions))} events undecided"
    dup = {e: n for e, n in decisions.items() if n > 1}
    assert not dup, f"{len(dup)} events with more than one decision"
    sinks = {
        env.plan.analytics_topic: ("analytics", None),
        env.plan.partner_topic("client-01"): ("partner_sharing", "client-01"),
        env.plan.partner_topic("client-02"): ("partner_sharing", "client-02"),
    }
    for topic, grant in sinks.items():
        delivered = Counter(env.sink_event_ids(topic, timeout=60))
        expected = {e for e, i in ids.items() if grant in _grants(i)}
        assert not (set(delivered) - expected), f"{topic}: leaked records"
        assert not (expected - set(delivered)), f"{topic}: {len(expected - set(delivered))} missing"
        assert max(delivered.values()) == 1, f"{topic}: duplicate records"
    provisions = Counter(m.key() for m in env.read(env.provisions, timeout=60))
    subjects_with = {i for i in set(ids.values()) for g in _grants(i) if g[1] is not None}
    expected_provisions = sum(1 for i in subjects_with for g in _grants(i) if g[1] is not None)
    assert max(provisions.values()) == 1, "duplicate provisions"
    assert len(provisions) == expected_provisions
    assert env.read(env.dlq, timeout=5) == []
    return {"decisions": sum(decisions.values()), "duplicates": 0, "missing": 0, "leaked": 0}


def test_kill_minus_nine_ten_times_loses_and_duplicates_nothing(
    router_env_factory: EnvFactory,
) -> None:
    env = router_env_factory(partners=["client-01", "client-02"], score_partners=[])
    events, kills, seed = scale(100_000, 200_000), 10, 20261202
    ids = _setup(env, events, "k")
    rng = random.Random(seed)
    kills_mid_work = 0
    for _kill in range(kills):
        router = env.start_router(instance_id="kill-test", extra=["--loop.commit-interval", "0.2"])
        time.sleep(rng.uniform(0.3, 2.0))
        before = env._written(env.decisions)
        router.stop(signal.SIGKILL)
        if before < len(ids):
            kills_mid_work += 1
    env.start_router(instance_id="kill-test")
    env.decisions_by_event(len(ids), timeout=scale(300, 900))
    assert kills_mid_work >= 5, "the kills did not land while work was in progress"
    counts = _check_exactly_once(env, ids)
    report = audit(env, workers=2)
    write_report(
        "router_kill_9",
        seed=seed,
        events=events,
        kills=kills,
        kills_mid_work=kills_mid_work,
        audit=report.verdict,
        **counts,
    )
    assert report.ok, report.render()


def test_rebalances_mid_stream_lose_and_duplicate_nothing(router_env_factory: EnvFactory) -> None:
    env = router_env_factory(partners=["client-01", "client-02"], score_partners=[])
    events = scale(60_000, 200_000)
    ids = _setup(env, events, "r")
    first = env.start_router(instance_id="rb-0")
    for n in range(3):  # a second worker joins, then leaves, three times
        second = env.start_router(instance_id=f"rb-{n + 1}")
        time.sleep(1.5)
        second.stop(signal.SIGTERM)
        time.sleep(0.5)
    env.decisions_by_event(len(ids), timeout=scale(300, 900))
    assert first.proc.poll() is None, first.tail()
    counts = _check_exactly_once(env, ids)
    report = audit(env, workers=2)
    write_report("router_rebalance", events=events, rebalances=3, audit=report.verdict, **counts)
    assert report.ok, report.render()
