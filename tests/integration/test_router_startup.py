"""A router started with a new consumer group on a backlog decides every record.

Regression test for a loss of the first (faust) router, found on 2026-11-26: records fetched
while its consent recovery was finishing were neither processed nor acknowledged, and it
committed past them. Kept for the transactional router: 6 partitions, and a consent backlog
that keeps the view's load busy while the raw records are prefetched.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tests.integration.conftest import EnvFactory
from tests.integration.consent_harness import new_change

pytestmark = pytest.mark.integration

PARTITIONS = 6
SUBJECTS = 3_000
EVENTS = 9_000


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
        datum = {
            "event_id": uuid.uuid4(),
            "subject_id": subject,
            "event_time": now,
            "event_type": "JOB_VIEW",
            "job_id": "job-1",
            "company_id": "client-01",
        }
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
