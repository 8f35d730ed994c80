"""The sink consumer client's pure parts: what a record is read as, the bounded memory of
delivered events, and the consumer configuration it refuses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from consentgate.client import EventMemory, Retraction, SinkMessage, Undecodable, classify
from consentgate.client.consumer import consumer_config
from consentgate.errors import ConfigError
from consentgate.models.records import DecisionRecord
from consentgate.models.sinks import BrowsingSinkRecord, Evidence
from consentgate.serde import Serde

pytestmark = pytest.mark.unit

T = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


@dataclass
class Record:
    """The parts of a confluent-kafka Message that ``classify`` reads."""

    value_: bytes | None
    key_: bytes | None = b"k1"
    headers_: list[tuple[str, bytes]] = field(default_factory=list)

    def topic(self) -> str:
        return "sink"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return 41

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> list[tuple[str, bytes]]:
        return self.headers_

    def timestamp(self) -> tuple[int, int]:
        return (1, int(T.timestamp() * 1000))


def _sink_record(event_id: uuid.UUID) -> BrowsingSinkRecord:
    return BrowsingSinkRecord(
        event_id=event_id,
        job_id="job-1",
        subject_key="k1",
        purpose="partner_sharing",
        recipient="client-01",
        evidence=Evidence(
            consent_change_id="c1",
            policy_version="v1",
            source_topic="raw",
            event_id=event_id,
            decided_at=T,
        ),
    )


def test_a_sink_record_a_retraction_and_anything_else() -> None:
    serde = Serde()
    event = uuid.uuid4()
    got = classify(serde, Record(serde.encode(_sink_record(event))))
    assert isinstance(got, SinkMessage)
    assert (got.event_id, got.key, got.where) == (str(event), "k1", "sink[2]@41")
    assert got.record.job_id == "job-1"
    assert got.timestamp == T

    headers = [
        ("cg-retraction", b"erased"),
        ("cg-consent-change-id", b"c9"),
        ("cg-purpose", b"analytics"),
        ("cg-policy-version", b"v2"),
    ]
    gone = classify(serde, Record(None, headers_=headers))
    assert gone == Retraction("sink", 2, 41, "k1", "erased", "c9", "analytics", "v2", T)
    bare = classify(serde, Record(None))  # a null without the header still means delete
    assert isinstance(bare, Retraction)
    assert bare.reason == "unknown"

    decision = DecisionRecord(
        event_id=event,
        source_topic="raw",
        source_partition=0,
        source_offset=1,
        subject_id="s1",
        event_time=T,
        decided_at=T,
        policy_version="v1",
        outcomes=[],
    )
    other = classify(serde, Record(serde.encode(decision)))
    assert isinstance(other, Undecodable)
    assert "not a sink record" in other.error.reason
    assert other.error.raw == serde.encode(decision)
    broken = classify(serde, Record(b"\x00garbage"))
    assert isinstance(broken, Undecodable)
    assert broken.error.offset == 41


def test_event_memory_is_bounded_and_forgets_a_retracted_key() -> None:
    memory = EventMemory(capacity=3)
    for i, key in enumerate(["a", "a", "b", "c"]):
        memory.remember("t", f"e{i}", key)
    assert len(memory) == 3
    assert not memory.seen("t", "e0")  # the oldest went first
    assert memory.seen("t", "e1")
    assert not memory.seen("other-topic", "e1")  # the same event in another sink is new
    assert memory.forget_key("t", "a") == 1
    assert not memory.seen("t", "e1")
    assert memory.seen("t", "e2")
    assert memory.forget_key("t", "a") == 0
    memory.remember("t", "e2", "b")  # again: no second entry
    assert len(memory) == 2
    off = EventMemory(capacity=0)
    off.remember("t", "e", "k")
    assert not off.seen("t", "e")


@pytest.mark.parametrize(
    "setting",
    [
        {"isolation.level": "read_uncommitted"},
        {"enable.auto.commit": True},
        {"enable.auto.commit": "true"},
        {"group.id": "someone-else"},
    ],
)
def test_the_consumer_refuses_settings_that_break_its_guarantees(
    setting: dict[str, object],
) -> None:
    with pytest.raises(ConfigError):
        consumer_config({"bootstrap.servers": "x:9092", **setting}, "g", from_beginning=True)


def test_the_consumer_forces_read_committed_and_manual_commits() -> None:
    conf = consumer_config(
        {"bootstrap.servers": "x:9092", "enable.auto.commit": "false"}, "g", from_beginning=False
    )
    assert conf["isolation.level"] == "read_committed"
    assert conf["enable.auto.commit"] is False
    assert conf["group.id"] == "g"
    assert conf["auto.offset.reset"] == "latest"
    assert (
        consumer_config({"bootstrap.servers": "x"}, "g", from_beginning=True)["auto.offset.reset"]
        == "earliest"
    )
