"""``consentgate retract``: the manual retraction path, for one subject.

The router retracts on withdrawal and erasure, under the key the sink knows the subject by
*now*. Data delivered earlier can sit under other keys: before a pseudonym key rotation, or
under a policy whose subject handling differed. So for every affected retractable sink
(``Sink.retractable``; ``--sinks`` narrows it) every key the sink holds the subject's data by
is looked up:

1. the current key (``consentgate.policy.retraction_key`` with today's pseudonym keys);
2. the ``subject_key`` of every provision of the subject for that sink in the ledger (the
   provisions topic is co-partitioned with the subject: only the subject's partition is read);
3. the keys of the sink's records whose evidence names an event of the subject: the
   decisions topic maps event id (and source coordinates) -> subject id; a key the sink
   already retracted after the data holds nothing and is not repeated.

Then one null-value record per (sink, key), all in one transaction, with the headers
``cg-retraction: manual``, ``cg-reason``, ``cg-policy-version``, ``cg-purpose``.
:func:`plan_retractions` and :func:`manual_retraction` are pure.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consentgate.errors import ConfigError, DecodeError
from consentgate.ops.reader import read_topic
from consentgate.ops.replay_live import EventRef, HeldIndex, read_held
from consentgate.ops.replay_outputs import REASON_HEADER
from consentgate.ops.replay_topics import partitions_of
from consentgate.policy import Policy, PseudonymKeys, Sink, retraction_key
from consentgate.router.outputs import HEADER, Output
from consentgate.router.partitioner import partition_for
from consentgate.router.txn import Outbox
from consentgate.serde import Serde
from consentgate.settings import Settings

__all__ = [
    "RetractKey",
    "affected_sinks",
    "ledger_keys",
    "manual_retraction",
    "plan_retractions",
    "record_keys",
    "subject_events",
    "write_retractions",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetractKey:
    sink: Sink
    key: bytes
    found_by: tuple[str, ...]  # current, ledger, records


def affected_sinks(policy: Policy, names: Sequence[str] | None) -> list[Sink]:
    """The retractable sinks (``names``: those; ConfigError for unknown or drop sinks)."""
    if names is None:
        return [s for s in policy.sinks if s.retractable]
    known = {s.name: s for s in policy.sinks}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--sinks: no such sink: {', '.join(unknown)}")
    dropping = [n for n in names if not known[n].retractable]
    if dropping:
        raise ConfigError(
            f"--sinks: {', '.join(dropping)} drop subject ids: they hold nothing per subject "
            "and cannot be retracted per subject"
        )
    return [known[n] for n in dict.fromkeys(names)]


def plan_retractions(
    sinks: Iterable[Sink],
    subject: str,
    keys: PseudonymKeys,
    ledger: Mapping[str, set[str]],
    records: Mapping[str, set[bytes]],
) -> list[RetractKey]:
    """Every (sink, key) to retract, with where each key was found."""
    out: list[RetractKey] = []
    for sink in sinks:
        found: dict[bytes, list[str]] = {}
        current = retraction_key(sink, subject, keys)
        if current is not None:
            found.setdefault(current.encode(), []).append("current")
        for key in sorted(ledger.get(sink.name, ())):
            found.setdefault(key.encode(), []).append("ledger")
        for raw in sorted(records.get(sink.name, ())):
            found.setdefault(raw, []).append("records")
        out.extend(RetractKey(sink, key, tuple(by)) for key, by in sorted(found.items()))
    return out


def manual_retraction(item: RetractKey, reason: str, policy_version: str) -> Output:
    headers = (
        (HEADER.RETRACTION, b"manual"),
        (REASON_HEADER, reason.encode()),
        (HEADER.POLICY_VERSION, policy_version.encode()),
        (HEADER.PURPOSE, item.sink.purpose.encode()),
    )
    return Output(item.sink.topic, item.key, None, headers)


# -- finding keys (I/O) -------------------------------------------------------------------
def ledger_keys(
    kafka: Mapping[str, Any], topic: str, subject: str, serde: Serde
) -> dict[str, set[str]]:
    """sink name -> the subject keys the ledger says the subject was provided under."""
    count = partitions_of(kafka, topic)
    if count is None:
        return {}
    found: dict[str, set[str]] = {}
    needle = subject.encode()
    for msg in _read_partition(kafka, topic, partition_for(needle, count)):
        value = msg.value()
        if value is None or needle not in value:  # the id is in the bytes if it is the subject
            continue
        try:
            record = serde.decode(value).value
        except DecodeError:
            continue
        if record.get("subject_id") == subject and record.get("subject_key"):
            found.setdefault(str(record["sink"]), set()).add(str(record["subject_key"]))
    return found


def subject_events(
    kafka: Mapping[str, Any], topic: str, subject: str, serde: Serde
) -> list[EventRef]:
    """The subject's decided events (id and source coordinates)."""
    out: list[EventRef] = []
    needle = subject.encode()
    if partitions_of(kafka, topic) is None:
        return out
    for msg in read_topic(dict(kafka), topic):
        value = msg.value()
        if value is None or needle not in value:
            continue
        try:
            record = serde.decode(value).value
        except DecodeError:
            continue
        if record.get("subject_id") != subject:
            continue
        where = f"{record['source_topic']}[{record['source_partition']}]@{record['source_offset']}"
        out.append(EventRef(str(record["event_id"]), where, subject))
    return out


def record_keys(
    kafka: Mapping[str, Any],
    sinks: Iterable[Sink],
    events: Sequence[EventRef],
    keys: PseudonymKeys,
    serde: Serde,
) -> dict[str, set[bytes]]:
    """sink name -> keys under which the sink holds a record of one of ``events`` (by the
    id the sink names it by: recipient-scoped on partner sinks, with today's keys)."""
    out: dict[str, set[bytes]] = {}
    for sink in sinks:
        if not events:
            out[sink.name] = set()
            continue
        index: HeldIndex = read_held(kafka, sink.topic, serde)
        out[sink.name] = index.keys_of(i for e in events for i in e.ids(sink, keys))
    return out


def _read_partition(kafka: Mapping[str, Any], topic: str, partition: int) -> Iterator[Message]:
    """Every committed record of one partition present now, in order."""
    consumer = Consumer(
        {
            **kafka,
            "group.id": "consentgate-retract-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        end = int(high or 0)
        if end <= int(low or 0):
            return
        consumer.assign([TopicPartition(topic, partition, int(low or 0))])
        while True:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return
                raise KafkaException(err)
            yield msg
            if (msg.offset() or 0) + 1 >= end:
                return
    finally:
        consumer.close()


# -- writing ------------------------------------------------------------------------------
def write_retractions(
    settings: Settings, kafka: Mapping[str, Any], subject: str, records: Sequence[Output]
) -> None:
    """All of ``records`` in one transaction (a per-subject transactional.id: two runs for
    one subject fence each other instead of interleaving)."""
    tag = hashlib.sha256(subject.encode()).hexdigest()[:16]
    config = settings.producer_config(None, **{"transactional.id": f"consentgate-retract-{tag}"})
    if "logger" in kafka:
        config["logger"] = kafka["logger"]
    outbox = Outbox(config)
    outbox.init()
    outbox.begin()
    for out in records:
        outbox.produce(out.topic, out.key, out.value, list(out.headers))
    outbox.commit([], None)
    outbox.close()
