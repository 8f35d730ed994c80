"""A withdrawal through the consent HTTP API, enforced by a running router (v2), on the real
broker.

A subject is granted ``analytics`` and ``partner_sharing`` with client-01; a bystander is
granted ``analytics``. The router (with its consent fold, ``RouterEnv``) routes both
subjects' browsing events, which keep flowing (one probe pair every ~0.2 s) while
``consentgate consent serve`` takes ``POST /v1/subjects/{id}/withdrawals`` of analytics. Then:

- the 202 answer's change id, partition and offset are the record on consent.changes;
- every probe of the subject with an event time after the withdrawal's effective time is
  denied for analytics (reason in the decision) and never reaches the analytics sink, while
  its partner sharing and the bystander's analytics go on;
- the router retracts the subject's earlier analytics records: a null-value record under the
  key the sink knows the subject by, after every data record of that key in its partition
  (Kafka's order per partition); the partner sink gets no retraction.

The latency is recorded (``record_property`` and printed), never asserted: t0 just before the
POST -> the first probe from which every analytics decision denies, -> consent.state shows
the change, -> the retraction's record timestamp.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from consentgate.models.consent import ConsentChange, ConsentTimeline
from consentgate.router.partitioner import partition_for
from tests.integration.api_harness import ApiProcess
from tests.integration.router_harness import RouterEnv, wait_for
from tests.kafka_helpers import job_view, produce, read_at

pytestmark = pytest.mark.integration

TIMEOUT = 180.0
PROBE_EVERY = 0.2  # pacing of the probe stream, not a synchronisation
AFTER_VISIBLE = 5  # probes sent after consent.state shows the withdrawal
ANALYTICS = "analytics"
PARTNER = "partner.client-01.browsing"
DENIED_AFTER_WITHDRAWAL = {"not_granted_at_event_time", "withdrawn", "consent_state_stale"}


@pytest.fixture
def api(router_env: RouterEnv) -> Iterator[ApiProcess]:
    process = ApiProcess(router_env.consents, 0, operator=False)
    try:
        yield process
    finally:
        code = process.stop()
    if process.ready:  # (a SIGTERM during its start up kills it: -15)
        assert code == 0, f"API exit {code} on SIGTERM:\n{process.tail()}"


@dataclass(frozen=True)
class Probe:
    subject_event: str
    bystander_event: str
    event_time: datetime
    sent: float  # monotonic, just before the produce


def _probe(env: RouterEnv, who: str, bystander: str) -> Probe:
    sent = time.monotonic()
    now = datetime.now(UTC)
    events = [job_view(subject, now) for subject in (who, bystander)]
    produce(
        env.bootstrap,
        env.plan.browsing_topic,
        [(str(e["subject_id"]).encode(), env.serde.encode(e, "BrowsingEvent")) for e in events],
    )
    env.produced += [str(e["event_id"]) for e in events]  # partner records carry scoped ids
    return Probe(str(events[0]["event_id"]), str(events[1]["event_id"]), now, sent)


class StateWatch(threading.Thread):
    """Notes (monotonic) when consent.state first shows ``change_id`` for ``subject``: a
    read_committed consumer on the subject's state partition, from its end before the POST."""

    def __init__(self, env: RouterEnv, subject: str, change_id: str) -> None:
        super().__init__(daemon=True)
        self.env, self.subject, self.change_id = env, subject, change_id
        self.partition = partition_for(subject.encode(), env.partitions)
        self.seen_at: float | None = None
        self.ready = threading.Event()  # assigned and fetching: start the clock after this
        self.done = threading.Event()

    def run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.env.bootstrap,
                "group.id": f"cg-watch-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
            }
        )
        try:
            part = TopicPartition(self.env.state, self.partition)
            _, end = consumer.get_watermark_offsets(part, timeout=30)
            consumer.assign([TopicPartition(self.env.state, self.partition, end)])
            consumer.poll(0.1)
            self.ready.set()
            deadline = time.monotonic() + TIMEOUT
            while self.seen_at is None and time.monotonic() < deadline:
                msg = consumer.poll(0.05)
                if msg is None or msg.error() is not None or msg.value() is None:
                    continue
                if msg.key() != self.subject.encode():
                    continue
                record = self.env.serde.decode_model(msg.value(), ConsentTimeline)
                if any(c.change_id == self.change_id for c in record.changes):
                    self.seen_at = time.monotonic()
        finally:
            consumer.close()
            self.ready.set()
            self.done.set()


def _sink_records(env: RouterEnv, topic: str) -> list[Message]:
    return env.read(topic, timeout=30)


def _event_id(env: RouterEnv, msg: Message) -> str:
    return str(env.serde.decode(msg.value()).value["evidence"]["event_id"])


def test_an_api_withdrawal_is_enforced_by_the_router_and_retracts(
    router_env: RouterEnv, api: ApiProcess, record: Callable[[str, object], None]
) -> None:
    env = router_env
    who = f"api-wd-{uuid.uuid4().hex[:10]}"
    bystander = f"api-by-{uuid.uuid4().hex[:10]}"
    for fold in env.consents.folds:  # started by RouterEnv; a busy machine may be slow
        fold.wait_ready(TIMEOUT)
    env.consent(who, "GRANT", "analytics")
    env.consent(who, "GRANT", "partner_sharing", "client-01")
    env.consent(bystander, "GRANT", "analytics")
    router = env.start_router()
    api.wait_ready()

    # events flowing before: both subjects allowed everywhere they consented
    before = [_probe(env, who, bystander) for _ in range(3)]
    decided = env.decisions_by_event(2 * len(before), timeout=TIMEOUT)
    for p in before:
        assert decided[p.subject_event][ANALYTICS] == "allowed", decided[p.subject_event]
        assert decided[p.subject_event][PARTNER] == "allowed", decided[p.subject_event]
        assert decided[p.bystander_event][ANALYTICS] == "allowed"
    wait_for(lambda: _sink_records(env, env.plan.analytics_topic), timeout=TIMEOUT)

    change_id = f"wd-{who}"
    watch = StateWatch(env, who, change_id)
    watch.start()
    assert watch.ready.wait(TIMEOUT), "consent.state watch did not start"
    t0 = time.monotonic()
    wall0 = datetime.now(UTC)
    answer = api.client.post(
        f"/v1/subjects/{who}/withdrawals", json={"purpose": "analytics", "change_id": change_id}
    )
    t_answer = time.monotonic()
    assert answer.status_code == 202, (answer.status_code, answer.text, api.tail())

    # the stream goes on until consent.state shows the withdrawal, and a few probes more
    after: list[Probe] = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        after.append(_probe(env, who, bystander))
        if watch.done.is_set():
            seen_after = [p for p in after if watch.seen_at and p.sent > watch.seen_at]
            if watch.seen_at is None or len(seen_after) >= AFTER_VISIBLE:
                break
        watch.done.wait(PROBE_EVERY)
    watch.join(TIMEOUT)
    assert watch.seen_at is not None, f"{change_id} not in {env.state} in {TIMEOUT} s"

    # the answer is the record on consent.changes
    (receipt,) = answer.json()["changes"]
    assert receipt["change_id"] == change_id
    assert (receipt["action"], receipt["purpose"], receipt["recipient"]) == (
        "WITHDRAW",
        "analytics",
        None,
    )
    assert receipt["topic"] == env.changes
    assert receipt["partition"] == partition_for(who.encode(), env.partitions)
    msg = read_at(env.bootstrap, env.changes, receipt["partition"], receipt["offset"], TIMEOUT)
    assert msg.key() == who.encode()
    logged = env.serde.decode_model(msg.value(), ConsentChange)
    assert logged.change_id == change_id
    assert (logged.subject_id, logged.action.value, logged.purpose) == (
        who,
        "WITHDRAW",
        "analytics",
    )
    assert logged.actor == "api:client"
    effective = datetime.fromisoformat(receipt["effective_time"])
    assert logged.effective_time == effective
    assert logged.recorded_time == datetime.fromisoformat(receipt["recorded_time"])

    # decisions: every probe after the withdrawal took effect is denied analytics
    decided = env.decisions_by_event(2 * (len(before) + len(after)), timeout=TIMEOUT)
    late = [p for p in after if p.event_time > effective]
    assert len(late) >= AFTER_VISIBLE, (len(late), len(after))
    reasons = [decided[p.subject_event][ANALYTICS] for p in after]
    for p in late:
        reason = decided[p.subject_event][ANALYTICS]
        assert reason in DENIED_AFTER_WITHDRAWAL, (p, reason, reasons)
    # partner sharing is not withdrawn: its events go on. While the router knows of the
    # withdrawal (read from consent.changes) but its view does not show it yet, every event
    # of the subject is denied as consent_state_stale (fail closed); once settled, allowed.
    assert watch.seen_at is not None
    partner_reasons = [decided[p.subject_event][PARTNER] for p in after]
    assert set(partner_reasons) <= {"allowed", "consent_state_stale"}, partner_reasons
    assert partner_reasons[-1] == "allowed", partner_reasons
    # the bystander's analytics go on
    for p in [*before, *after]:
        assert decided[p.bystander_event][ANALYTICS] == "allowed", decided[p.bystander_event]

    # sinks: nothing of the subject after the withdrawal in analytics; the retraction follows
    # every one of its earlier records, in the same partition
    late_ids = {p.subject_event for p in late}
    subject_ids = {p.subject_event for p in [*before, *after]}
    retraction = wait_for(
        lambda: [
            m
            for m in _sink_records(env, env.plan.analytics_topic)
            if m.value() is None
            and dict(m.headers() or []).get("cg-consent-change-id") == change_id.encode()
        ],
        timeout=TIMEOUT,
    )
    assert len(retraction) == 1, retraction
    (retracted,) = retraction
    headers = dict(retracted.headers() or [])
    assert headers["cg-retraction"] == b"withdrawn"
    assert headers["cg-purpose"] == b"analytics"
    analytics = _sink_records(env, env.plan.analytics_topic)
    mine = [m for m in analytics if m.value() is not None and _event_id(env, m) in subject_ids]
    delivered = {_event_id(env, m) for m in mine}
    assert {p.subject_event for p in before} <= delivered
    assert not delivered & late_ids, sorted(delivered & late_ids)
    assert {m.key() for m in mine} == {retracted.key()}  # the key the sink knows them by
    assert {m.partition() for m in mine} == {retracted.partition()}
    assert all(m.offset() < retracted.offset() for m in mine), "data after its retraction"
    bystander_rows = [
        m for m in analytics if m.value() is not None and _event_id(env, m) not in subject_ids
    ]
    assert {_event_id(env, m) for m in bystander_rows} == {
        p.bystander_event for p in [*before, *after]
    }
    assert not [m for m in analytics if m.value() is None and m.key() != retracted.key()]
    # partner sharing: the probes keep arriving, nothing retracted
    partner = _sink_records(env, env.plan.partner_topic("client-01"))
    assert not [m for m in partner if m.value() is None], "partner sink got a retraction"
    partner_ids = set(env.sink_event_ids(env.plan.partner_topic("client-01")))
    allowed = {
        p.subject_event for p, r in zip(after, partner_reasons, strict=True) if r == "allowed"
    }
    assert {p.subject_event for p in before} | allowed <= partner_ids
    assert not ({p.subject_event for p in after} - allowed) & partner_ids
    assert router.proc.poll() is None, router.tail()

    # latency (recorded, never asserted)
    denied_from = next(i for i in range(len(after)) if all(r != "allowed" for r in reasons[i:]))
    _, ts_ms = retracted.timestamp()  # the router's CreateTime
    figures = {
        "withdrawal_post_seconds": t_answer - t0,
        "withdrawal_denied_seconds": after[denied_from].sent - t0,
        "withdrawal_state_visible_seconds": watch.seen_at - t0,
        "withdrawal_retraction_seconds": ts_ms / 1000 - wall0.timestamp(),
        "withdrawal_allowed_after_post": float(denied_from),
    }
    for name, value in figures.items():
        record(name, round(value, 3))
    print(
        "latency from just before the POST: "
        + ", ".join(f"{k.removeprefix('withdrawal_')}={v:.3f}" for k, v in figures.items())
        + f"; analytics reasons after the POST: {reasons}; partner: {partner_reasons}"
    )
