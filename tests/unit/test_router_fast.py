"""The router core's fast path (verdict memory, spliced records) against its reference.

``Router.plan`` answers from memory and writes records from parts; ``plan_uncached`` runs
decide_all and the serde on whole values. They must agree byte for byte, whatever the
timeline, the event times and ``now``: in particular when a grant starts or ends between
two events answered from the same memory entry.
"""

from __future__ import annotations

import gc
import io
import uuid
from datetime import datetime, timedelta
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentgate.consent.timeline import Timeline, apply
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod
from consentgate.policy import ReasonCode, decide_all
from consentgate.router.avro import compile_schema
from consentgate.router.config import RouterConfig
from consentgate.router.emit import Emitter
from consentgate.router.gate import GateVerdict
from consentgate.router.judge import Judge
from consentgate.router.metrics import RouterMetrics
from consentgate.router.plan import Parsed, RawRecord, RoutePlan, Router, ShadowMismatch
from consentgate.router.state import LoopState
from consentgate.router.verdicts import boundaries
from consentgate.router.view import ConsentLookup
from consentgate.serde import Serde
from tests.unit.avro_strategies import datums
from tests.unit.consent_strategies import SUBJECT, T0, at, change_sets, times
from tests.unit.policy_fixtures import KEYS, POLICY

pytestmark = pytest.mark.unit

SERDE = Serde()
TOPICS = {"browsing": "events.browsing.raw.v1", "scores": "scores.offer_decline.raw.v1"}
EVENT_IDS = [uuid.UUID(int=n, version=4) for n in range(1, 4)]


def raw_event(source: str, event_id: uuid.UUID, t: datetime, gpc: bool) -> bytes:
    if source == "browsing":
        datum: dict[str, Any] = {
            "event_id": event_id,
            "subject_id": SUBJECT,
            "event_time": t,
            "event_type": "JOB_VIEW",
            "page_url": "https://jobs.example/j/1",
            "job_id": "j-1",
            "company_id": "acme-corp",
            "search_query": "q",
            "device": {"user_agent": "ua", "device_type": None, "os": "linux"},
            "gpc": gpc,
        }
        return SERDE.encode(datum, "BrowsingEvent")
    datum = {
        "event_id": event_id,
        "subject_id": SUBJECT,
        "event_time": t,
        "score_type": "offer_decline_probability",
        "score": 0.25,
        "model_version": "m-1",
    }
    return SERDE.encode(datum, "DerivedScore")


def parsed(router: Router, source: str, n: int, t: datetime, *, gpc: bool, offset: int) -> Parsed:
    rec = RawRecord(
        TOPICS[source], 0, offset, SUBJECT.encode(), raw_event(source, EVENT_IDS[n], t, gpc)
    )
    result = router.parse(rec, t)  # valid at its own time; plan may be asked later or earlier
    assert isinstance(result, Parsed), result
    return result


def build(changes: list[ConsentChange]) -> Timeline | None:
    tl: Timeline | None = None
    for c in changes:
        tl = apply(tl, c)
    return tl


def assert_same(fast: RoutePlan, shadow: RoutePlan) -> None:
    assert fast.decisions == shadow.decisions
    assert fast.outputs == shadow.outputs


events = st.lists(
    st.tuples(
        st.sampled_from(["browsing", "browsing", "scores"]),
        st.integers(0, len(EVENT_IDS) - 1),
        times(),  # event time
        st.integers(-2, 30),  # now, in minutes after the event time (before it: not valid)
        st.booleans(),  # gpc
        st.sampled_from([None, None, None, None, ReasonCode.CONSENT_STATE_STALE]),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=change_sets(max_size=10), later=change_sets(max_size=3), drawn=events)
def test_fast_plan_equals_the_uncached_plan(
    changes: list[ConsentChange], later: list[ConsentChange], drawn: list[Any]
) -> None:
    """Over one router's life (memory kept across events and timelines, events repeating
    so that the memory answers), every plan equals the uncached plan and decide_all."""
    router = Router(POLICY, SERDE, KEYS)
    first = build(changes)
    second = build(
        [*changes, *(c.model_copy(update={"change_id": f"x{c.change_id}"}) for c in later)]
    )
    for offset, (source, n, t, minutes, gpc, override) in enumerate(drawn * 2):
        for tl in (first, second):
            p = parsed(router, source, n, t, gpc=gpc, offset=offset)
            now = t + timedelta(minutes=minutes)
            shadow = router.plan_uncached(p, tl, now, override=override)  # first: see plan
            fast = router.plan(p, tl, now, override=override)
            assert_same(fast, shadow)
            if override is None:
                sinks = POLICY.sinks_for(source)
                assert list(fast.decisions) == decide_all(p.event, tl, sinks, now, POLICY.defaults)


def test_a_grant_ending_between_two_events_is_not_answered_from_memory() -> None:
    grant = ConsentChange(
        change_id="g1",
        subject_id=SUBJECT,
        action=ConsentAction.GRANT,
        purpose="partner_sharing",
        recipient="acme-corp",
        effective_time=at(0),
        expires_at=at(10),
        recorded_time=at(0),
        method=ConsentMethod.WEB_FORM,
    )
    tl = build([grant])
    assert tl is not None and boundaries(tl) == [at(0), at(10)]
    router = Router(POLICY, SERDE, KEYS)
    event = parsed(router, "browsing", 0, at(5), gpc=False, offset=1)
    allowed = router.plan(event, tl, at(6))
    again = router.plan(parsed(router, "browsing", 1, at(6), gpc=False, offset=2), tl, at(7))
    expired = router.plan(event, tl, at(10))  # same event, now past the expiry
    reasons = [
        {s.name: d.reason for s, d in p.decisions}["partner.acme-corp.browsing"]
        for p in (allowed, again, expired)
    ]
    assert reasons == [ReasonCode.ALLOWED, ReasonCode.ALLOWED, ReasonCode.EXPIRED]
    assert again.decisions is allowed.decisions  # the same window of t and of now
    assert_same(expired, router.plan_uncached(event, tl, at(10)))


def test_the_memory_answers_repeated_events_of_a_window() -> None:
    tl = build(
        [
            ConsentChange(
                change_id="g1",
                subject_id=SUBJECT,
                action=ConsentAction.GRANT,
                purpose="analytics",
                effective_time=T0,
                recorded_time=T0,
                method=ConsentMethod.API,
            )
        ]
    )
    router = Router(POLICY, SERDE, KEYS)
    one = router.plan(parsed(router, "browsing", 0, at(5), gpc=False, offset=1), tl, at(6))
    two = router.plan(parsed(router, "browsing", 1, at(7), gpc=False, offset=2), tl, at(8))
    assert two.decisions is one.decisions  # the same verdict: from memory
    gpc = router.plan(parsed(router, "browsing", 2, at(7), gpc=True, offset=3), tl, at(8))
    assert gpc.decisions is not one.decisions  # other signals: decided anew


def test_plan_uncached_does_not_write_the_provision_memory() -> None:
    grant = ConsentChange(
        change_id="g1",
        subject_id=SUBJECT,
        action=ConsentAction.GRANT,
        purpose="partner_sharing",
        recipient="acme-corp",
        effective_time=T0,
        recorded_time=T0,
        method=ConsentMethod.API,
    )
    tl = build([grant])
    router = Router(POLICY, SERDE, KEYS)
    event = parsed(router, "browsing", 0, at(5), gpc=False, offset=1)
    topics = [o.topic for o in router.plan_uncached(event, tl, at(6)).outputs]
    assert topics.count("consentgate.provisions.v1") == 1
    assert router.plan_uncached(event, tl, at(6)).outputs == router.plan(event, tl, at(6)).outputs
    later = [o.topic for o in router.plan(event, tl, at(7)).outputs]
    assert "consentgate.provisions.v1" not in later  # plan remembered it


def test_plan_checked_returns_the_plan_and_stops_on_a_difference() -> None:
    grant = ConsentChange(
        change_id="g1",
        subject_id=SUBJECT,
        action=ConsentAction.GRANT,
        purpose="partner_sharing",
        recipient="acme-corp",
        effective_time=T0,
        recorded_time=T0,
        method=ConsentMethod.API,
    )
    tl = build([grant])
    reference = Router(POLICY, SERDE, KEYS)
    router = Router(POLICY, SERDE, KEYS)
    event = parsed(router, "browsing", 0, at(5), gpc=False, offset=1)
    expected = reference.plan_uncached(event, tl, at(6)).outputs
    assert router.plan_checked(event, tl, at(6)).outputs == expected  # provision included
    assert router.plan_checked(event, tl, at(7)).outputs != expected  # remembered: none
    records = router._sink_records["browsing"]  # a fast path gone wrong: another framing
    records.header = b"\xc3\x01" + bytes(8)
    with pytest.raises(ShadowMismatch):
        router.plan_checked(event, tl, at(8))


@pytest.mark.parametrize("name", SERDE.repository.names())
def test_the_fast_writer_writes_what_fastavro_writes(name: str) -> None:
    entry = SERDE.repository.current(name)
    write = compile_schema(entry.parsed)
    if write is None:
        pytest.skip(f"{name} uses types outside the fast writer's subset")

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(datums(entry.schema))
    def check(datum: dict[str, Any]) -> None:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, entry.parsed, datum)
        assert write(datum) == buf.getvalue()

    check()


def test_a_changed_consent_record_replaces_the_subjects_timeline_and_verdicts() -> None:
    """Each consent change of a subject is a new record in the view, and the view never
    hands out the old one again: the router keeps one decoded timeline and one verdict
    entry per subject, not one per record it has seen (keyed by the record, the memories
    kept every superseded timeline until full: bench/soak.py grew ~1 MiB/min for hours)."""
    judge = Judge(Router(POLICY, SERDE, KEYS, timeline_memory=1024), 1)
    changes: list[ConsentChange] = []
    for n in range(40):
        action = ConsentAction.GRANT if n % 2 == 0 else ConsentAction.WITHDRAW
        changes.append(
            ConsentChange(
                change_id=f"c{n}",
                subject_id=SUBJECT,
                action=action,
                purpose="analytics",
                notice_version="2025-01" if action is ConsentAction.GRANT else None,
                effective_time=at(n),
                recorded_time=at(n),
                method=ConsentMethod.API,
            )
        )
        tl = build(changes)
        assert tl is not None
        lookup = ConsentLookup("present", SERDE.encode(tl.record))
        for k in range(2):  # the second event of the record: answered from memory
            p = parsed(judge.core, "browsing", k, at(n), gpc=False, offset=2 * n + k)
            plan = judge.judge(p, GateVerdict.READY, lookup, at(n))
            assert_same(plan, judge.core.plan_uncached(p, tl, at(n)))
    assert len(judge.core._timelines) == 1
    assert len(judge.core._verdicts._entries) == 1


class _Outbox:
    """What the emitter calls on its outbox, recorded."""

    def __init__(self) -> None:
        self.produced = 0

    def produce_outputs(self, outputs: Any, provisions: str, partition: int) -> None:
        self.produced += len(outputs)


def test_the_emitter_keeps_nothing_of_committed_decisions() -> None:
    """Outcome counts of a transaction are expanded at commit; the emitter keeps no plan's
    decisions afterwards (remembered by identity, up to 65,536 superseded verdicts'
    decisions stayed alive: one more per consent change in bench/soak.py)."""
    state = LoopState(
        config=RouterConfig.build(),
        policy=POLICY,
        metrics=RouterMetrics(),
        partitions=1,
        consent_wait=1.0,
    )
    router = Router(POLICY, SERDE, KEYS)
    emitter = Emitter(state, _Outbox(), router, {})  # type: ignore[arg-type]  # a fake outbox
    plans = []
    for n in range(20):
        grant = ConsentChange(
            change_id=f"g{n}",
            subject_id=SUBJECT,
            action=ConsentAction.GRANT,
            purpose="analytics",
            notice_version="2025-01",
            effective_time=at(n),
            recorded_time=at(n),
            method=ConsentMethod.API,
        )
        p = parsed(router, "browsing", n % len(EVENT_IDS), at(n), gpc=False, offset=n)
        plan = router.plan(p, build([grant]), at(n))  # a new timeline: a new verdict
        emitter.emit(plan, p.rec, 0)
        emitter.committed()
        plans.append(plan)
    assert len({id(p.decisions) for p in plans}) == len(plans)
    own = [v for k, v in vars(emitter).items() if k not in {"s", "outbox", "core"}]
    held = _reachable(own)
    assert not [p for p in plans if id(p.decisions) in held]
    counted = state.metrics.outcome("analytics", ReasonCode.ALLOWED.value)
    assert counted._value.get() == len(plans)


def _reachable(roots: list[Any]) -> set[int]:
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        obj = todo.pop()
        if id(obj) not in seen:
            seen.add(id(obj))
            todo.extend(gc.get_referents(obj))
    return seen
