"""The router worker: faust agents that decode, ask the policy, and produce.

One agent per policy source (raw events → sinks, decisions, provisions, dead letters) and one
over ``consent.changes.v1`` (withdrawals and erasures → retractions). Everything that decides
lives in :mod:`consentgate.router.plan` and :mod:`consentgate.router.retract`; this module
only moves bytes and waits where the time-correct join says so.

Order of work for one raw record (concurrency 1 per partition, faust-streaming #606):
parse (dead-letter if bad) → wait at the gate until the consent view is at least as new as
the event (bounded; else deny all as consent_state_stale) → look the subject up in the view
→ decide every sink → hand every output to the producer → faust commits the offset only after
flushing the producer (at-least-once; outputs keyed deterministically).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import faust
from faust.types import EventT, ProducerT
from prometheus_client import Counter

from consentgate.errors import DecodeError
from consentgate.models.consent import ConsentChange
from consentgate.policy import Policy, PseudonymKeys, ReasonCode, pseudonym_key_names
from consentgate.router.app import AGENT_CONCURRENCY, RouterApp, RouterAppConfig, create_router
from consentgate.router.delivery import DeliveryGuard
from consentgate.router.gate import GateVerdict
from consentgate.router.metrics import RouterMetrics
from consentgate.router.outputs import Output, OutputTopics
from consentgate.router.plan import RawRecord, RoutePlan, Router
from consentgate.router.retract import retractions
from consentgate.router.web import add_web_views
from consentgate.serde import Serde
from consentgate.settings import Settings

__all__ = ["Readiness", "RouterWorker", "build_worker"]

log = logging.getLogger(__name__)


@dataclass
class Readiness:
    """A view listener: ready once the consent partitions are loaded (after every rebalance)."""

    metrics: RouterMetrics
    ready: bool = False
    positions: dict[int, int] = field(default_factory=dict)

    def on_applied(self, partition: int, next_offset: int) -> None:
        self.positions[partition] = next_offset

    def on_revoked(self, partitions: set[int]) -> None:
        for p in partitions:
            self.positions.pop(p, None)

    def on_recovered(self, positions: Mapping[int, int]) -> None:
        self.positions.update(positions)
        self.ready = True
        self.metrics.ready.set(1)


@dataclass
class RouterWorker:
    """A wired router: the faust app plus what its agents use."""

    router_app: RouterApp
    core: Router
    policy: Policy
    metrics: RouterMetrics
    readiness: Readiness
    changes_topic: str
    retraction_wait: float
    delivery_guard: DeliveryGuard = field(default_factory=DeliveryGuard)
    _producer: ProducerT | None = field(default=None, init=False, repr=False)
    _outcome_counters: dict[tuple[str, str], Counter] = field(
        default_factory=dict, init=False, repr=False
    )

    @property
    def app(self) -> faust.App:
        return self.router_app.app

    # -- output -------------------------------------------------------------------------
    async def send(self, outputs: tuple[Output, ...] | list[Output]) -> None:
        """Hand every output to faust's producer, in order, before returning.

        Straight to ``app.producer`` rather than through ``Topic.send``: faust's
        ``maybe_start_producer`` (``@stampede``) yields to the event loop three times per
        record, so the producer's sender task shipped one or two records per produce request
        (a socket write each: the biggest cost of the worker, profiled). Here the records of
        an event are appended to the producer's batches without yielding and leave together.
        Every delivery is watched by the app's :class:`~consentgate.router.delivery.DeliveryGuard`,
        which stops the process before a commit if any failed.
        The producer is the one faust flushes before it commits offsets, so an event's
        offset is still committed only after its outputs were acknowledged.
        """
        producer = self._producer
        if producer is None:
            producer = self._producer = await self.app.maybe_start_producer()
        guard = self.delivery_guard
        for out in outputs:
            delivery = await producer.send(
                out.topic, out.key, out.value, None, None, list(out.headers)
            )
            guard.watch(out.topic, cast("asyncio.Future[Any]", delivery))

    # -- raw events ---------------------------------------------------------------------
    async def handle(self, event: EventT[bytes]) -> RoutePlan:
        msg = event.message
        started = time.monotonic()
        rec = RawRecord(
            msg.topic,
            msg.partition,
            msg.offset,
            msg.key,
            msg.value,
            datetime.fromtimestamp(msg.timestamp, UTC) if msg.timestamp else None,
        )
        parsed = self.core.parse(rec, datetime.now(UTC))
        if isinstance(parsed, RoutePlan):
            await self.send(parsed.outputs)
            self.metrics.dead_letters.labels("parse").inc()
            return parsed
        event_time = parsed.event.event_time
        assert event_time is not None  # noqa: S101 - parse() dead-letters events without
        verdict = await self._admit(msg.partition, event_time.timestamp())
        override: ReasonCode | None = None
        timeline = None
        if verdict is GateVerdict.STALE:
            override = ReasonCode.CONSENT_STATE_STALE
            log.warning("%s: consent view stale after the wait: denying", rec.where)
        else:
            lookup = self.router_app.consent.lookup(parsed.event.subject_id or "")
            if lookup.state == "erased":
                override = ReasonCode.ERASED
            elif lookup.state == "present":
                try:
                    timeline = self.core.timeline(lookup.raw)
                except DecodeError as exc:
                    override = ReasonCode.CONSENT_UNREADABLE
                    log.error("%s: consent record unreadable: %s", rec.where, exc.reason)
        plan = self.core.plan(parsed, timeline, datetime.now(UTC), override=override)
        await self.send(plan.outputs)
        counters = self._outcome_counters
        for sink, decision in plan.decisions:
            label = (sink.name, decision.reason.value)
            counter = counters.get(label)
            if counter is None:
                counter = counters[label] = self.metrics.outcomes.labels(*label)
            counter.inc()
        self.metrics.decision_seconds.observe(time.monotonic() - started)
        return plan

    async def _admit(self, partition: int, event_time: float) -> GateVerdict:
        """The gate's verdict; without a trip through the event loop when READY at once.

        The fast path is the first check ``admit`` itself makes (same tracker, same
        arguments, waiting since now); anything but READY goes through ``admit``, which
        checks again and waits (bounded) or answers STALE.
        """
        gate = self.router_app.gate
        now = time.monotonic()
        ready = gate.tracker.check(
            partition, event_time, waiting_since=now, now_mono=now, max_wait=gate.max_wait
        )
        if ready is GateVerdict.READY:
            return ready
        self.metrics.waiting.inc()
        try:
            return await gate.admit(partition, event_time)
        finally:
            self.metrics.waiting.dec()

    # -- consent changes ----------------------------------------------------------------
    async def retract(self, event: EventT[bytes]) -> None:
        msg = event.message
        where = f"{msg.topic}[{msg.partition}]@{msg.offset}"
        try:
            change = self.core.serde.decode_model(
                msg.value,
                ConsentChange,
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
            )
        except DecodeError as exc:
            rec = RawRecord(msg.topic, msg.partition, msg.offset, msg.key, msg.value)
            letter = self.core.dead_letter(rec, datetime.now(UTC), "consent", exc)
            await self.send([letter])
            self.metrics.dead_letters.labels("consent").inc()
            return
        outs = retractions(self.policy, change, self.core.keys)
        if not outs:
            return
        await self._await_view(change, where)
        await self.send(outs)
        for out in outs:
            self.metrics.retractions.labels(out.topic).inc()
        log.info("%s: %s %s: %d retractions", where, change.action, change.change_id, len(outs))

    async def _await_view(self, change: ConsentChange, where: str) -> None:
        """Wait (bounded) until the consent view reflects ``change``, so that no event judged
        on the older view can reach a sink after the retraction."""
        deadline = time.monotonic() + self.retraction_wait
        while time.monotonic() < deadline:
            lookup = self.router_app.consent.lookup(change.subject_id)
            if lookup.state == "erased":
                return
            if lookup.state == "present" and lookup.raw is not None:
                try:
                    record = self.core.timeline(lookup.raw)
                except DecodeError:
                    return
                if record is not None and any(
                    c.change_id == change.change_id for c in record.record.changes
                ):
                    return
            await asyncio.sleep(0.02)
        log.warning(
            "%s: consent view does not show %s yet: retracting anyway", where, change.change_id
        )


def build_worker(
    config: RouterAppConfig,
    policy: Policy,
    settings: Settings | None = None,
    *,
    topics: OutputTopics | None = None,
    changes_topic: str = "consent.changes.v1",
    keys: PseudonymKeys | None = None,
) -> RouterWorker:
    """The router app with its agents, ready for ``app.main()`` or a faust worker."""
    settings = settings or Settings()
    keys = keys or PseudonymKeys.from_settings()
    keys.check(pseudonym_key_names(policy.sinks))
    router_app = create_router(config, settings)
    metrics = RouterMetrics()
    readiness = Readiness(metrics)
    router_app.consent.add_listener(readiness)
    worker = RouterWorker(
        router_app=router_app,
        core=Router(policy, Serde.from_settings(settings), keys, topics),
        policy=policy,
        metrics=metrics,
        readiness=readiness,
        changes_topic=changes_topic,
        retraction_wait=max(config.consent_wait, 1.0),
        delivery_guard=router_app.app.delivery_guard,
    )
    app = router_app.app
    for source in policy.sources:
        _add_source_agent(worker, source.name, source.topic)
    changes = app.topic(
        changes_topic, key_serializer="raw", value_serializer="raw", allow_empty=True
    )

    async def retractor(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for event in stream.events():
            await worker.retract(event)
            yield None

    app.agent(changes, name="retract", concurrency=AGENT_CONCURRENCY)(retractor)
    add_web_views(app, worker)
    return worker


def _add_source_agent(worker: RouterWorker, name: str, topic_name: str) -> None:
    app = worker.app
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw", allow_empty=True)

    consumed = worker.metrics.consumed.labels(name)

    async def route(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for event in stream.events():
            consumed.inc()
            await worker.handle(event)
            yield None

    app.agent(topic, name=f"route-{name}", concurrency=AGENT_CONCURRENCY)(route)


def describe(worker: RouterWorker) -> dict[str, Any]:
    """A readable summary for the startup log."""
    return {
        "sources": [s.topic for s in worker.policy.sources],
        "sinks": len(worker.policy.sinks),
        "policy_version": worker.policy.version,
        "changes_topic": worker.changes_topic,
    }
