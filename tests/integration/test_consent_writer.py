"""The consent writer on a real broker: log + compacted timeline, reload, erasure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consentgate.consent.writer import ConsentWriter, new_change
from tests.conftest import TopicFactory
from tests.kafka_helpers import consume_all

pytestmark = pytest.mark.integration


def test_writer_logs_changes_publishes_timelines_and_reloads(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    changes = topic_factory(3, prefix="changes")
    state = topic_factory(3, config={"cleanup.policy": "compact"}, prefix="state")
    writer = ConsentWriter(kafka_bootstrap, changes_topic=changes, state_topic=state)
    grant = new_change("s1", "GRANT", "partner_sharing", "acme-corp")
    writer.write(grant)
    writer.write(grant)  # re-delivered: idempotent by change id
    writer.write(new_change("s2", "GRANT", "analytics"))
    writer.write(new_change("s3", "GRANT", "analytics"))
    # later than the grant: changes in the same millisecond are ordered by change id
    writer.write(new_change("s3", "ERASE", at=datetime.now(UTC) + timedelta(seconds=1)))
    writer.flush()

    logged = consume_all(kafka_bootstrap, changes, expected=5)
    assert len(logged) == 5  # the log keeps every change as received
    published = consume_all(kafka_bootstrap, state, expected=4)
    by_key: dict[bytes, list[bytes | None]] = {}
    for m in published:
        by_key.setdefault(m.key(), []).append(m.value())
    assert len(by_key[b"s1"]) == 1  # the duplicate changed nothing: not republished
    assert by_key[b"s3"][-1] is None  # erasure: a tombstone
    # the log and the state of a subject share a partition (murmur2 on the subject id)
    assert {m.partition() for m in logged if m.key() == b"s1"} == {
        m.partition() for m in published if m.key() == b"s1"
    }

    reloaded = ConsentWriter(kafka_bootstrap, changes_topic=changes, state_topic=state)
    assert reloaded.load() == 2  # s1, s2; s3 is erased
    assert reloaded.timelines["s1"] == writer.timelines["s1"]
    assert reloaded.timelines["s1"].granted_at("partner_sharing", "acme-corp", grant.effective_time)
