"""A router started with a new consumer group on a backlog decides every record.

Regression test for a loss of the first (faust) router, found on 2026-11-26: records fetched
while its consent recovery was finishing were neither processed nor acknowledged, and it
committed past them. Kept for the transactional router: 6 partitions, and a consent backlog
that keeps the view's load busy while the raw records are prefetched.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.conftest import EnvFactory
from tests.integration.consent_harness import new_change
from tests.kafka_helpers import job_view

pytestmark = pytest.mark.integration

PARTITIONS = 6
SUBJECTS = 3_000
EVENTS = 9_000


BACKLOG_SUBJECTS = 20_000  # x 3 changes: a consent.changes log longer than 1 s of reading


def test_a_router_started_on_a_long_consent_changes_log_denies_nothing_as_stale(
    router_env_factory: EnvFactory,
) -> None:
    """A new router reads consent.changes from the start (60,000 changes here) before its
    gate lets an event through. Before the fix each event's consent wait (1 s) ran out
    while it read them: the full demo denied all of its 82,488 events as stale."""
    env = router_env_factory(partners=["client-01"], score_partners=[], partitions=PARTITIONS)
    subjects = [f"long-{i}" for i in range(BACKLOG_SUBJECTS)]
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    env.append(
        change
        for s in subjects
        for change in (
            new_change(s, "GRANT", "analytics", at=t0),
            new_change(s, "GRANT", "partner_sharing", "client-01", at=t0),
            new_change(s, "WITHDRAW", "partner_sharing", "client-01", at=t0 + timedelta(seconds=1)),
        )
    )
    sample = subjects[:: BACKLOG_SUBJECTS // 60]
    events = [e for s in sample for e in env.browse(s)]  # browse waits for the fold
    env.start_router(consent_wait=1.0)
    by_event = env.decisions_by_event(len(events), timeout=240)
    stale = [e for e in events if "consent_state_stale" in by_event[e].values()]
    assert not stale, f"{len(stale)} of {len(events)} events denied as stale"
    assert all(by_event[e]["analytics"] == "allowed" for e in events)
    partner = [sink for sink in by_event[events[0]] if sink.startswith("partner.")]
    assert partner and not any(by_event[e][p] == "allowed" for e in events for p in partner)


def test_router_on_a_backlog_decides_every_record(router_env_factory: EnvFactory) -> None:
    attempt = 0
    env = router_env_factory(partitions=PARTITIONS)
    subjects = [f"s{attempt}-{i}" for i in range(SUBJECTS)]
    for i, s in enumerate(subjects):
        env.append(new_change(s, "GRANT", "partner_sharing", "client-02"))
        if i % 3 == 0:
            env.append(new_change(s, "GRANT", "analytics"))
    now = datetime.now(UTC)
    events: dict[str, str] = {}
    records = []
    for n in range(EVENTS):
        subject = subjects[n % SUBJECTS]
        datum = job_view(subject, now)
        events[str(datum["event_id"])] = subject
        records.append((subject.encode(), env.serde.encode(datum, "BrowsingEvent")))
    env.raw(env.plan.browsing_topic, records)

    env.start_router()
    decisions = env.decisions_by_event(EVENTS, timeout=180)
    missing = set(events) - set(decisions)
    assert not missing, f"{len(missing)} of {EVENTS} raw records never decided"
    delivered = env.sink_event_ids(env.plan.analytics_topic, timeout=30)
    granted = {e for e, s in events.items() if int(s.rsplit("-", 1)[1]) % 3 == 0}
    assert set(delivered) == granted  # nothing leaked, nothing missing
