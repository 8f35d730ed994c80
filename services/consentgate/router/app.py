"""The router's faust App, configured for consent enforcement.

Everything here is a deliberate choice against a faust default (see
/work/shared/research/faust-streaming.md and docs/router-internals.md):

- ``processing_guarantee="at_least_once"``: faust's exactly-once does not cover output topics
  the app does not consume; outputs are keyed for idempotence instead.
- ``topic_partitions`` = the co-partition count of raw sources and ``consent.state``.
- ``web_tables_enabled=False`` and ``web_router_enabled=False``: no HTTP view of consent data.
- ``consumer_group_instance_id``: static membership, so a restarted worker keeps its
  partitions instead of triggering an eager stop-the-world rebalance. The id is bound to the
  worker's canonical URL (:func:`static_member_id`): faust's assignor asserts that the cached
  assignment a static member gets back names *its* URL, and a worker restarted under the same
  id with another web host/port hangs forever on that AssertionError (measured).
- ``topic_allow_declare=False`` / ``topic_disable_leader=True``: the worker never creates or
  alters topics (deploy/topics.yaml owns them), in particular never ``consent.state``.
- ``table_standby_replicas=0``: with the memory store a standby is re-read from offset 0
  anyway, so standbys only cost fetches.
- ``consumer_auto_offset_reset="earliest"``: a new group must not skip events silently.
- ``flow_control`` is :class:`~consentgate.router.flow.KeepCurrentGeneration`: faust's own
  clears the stream and changelog queues on every ``resume()``, also in the middle of a
  recovery, and lost raw events and could lose consent records that way (see that module).
- its consumer is :class:`~consentgate.router.delivery.GuardedConsumer`: faust commits after
  flushing its producer even when a record failed; ours stops the process instead.
- the hot debug loggers are set to INFO: faust's worker sets the root logger to DEBUG whenever
  its loglevel is WARN or higher (for its terminal spinner), and recovery then builds two
  discarded log records per consent record (~16 % of recovery time, profiled).

:func:`create_router` adds the consent view and the time-correct gate (its polling task is
registered with the app); agents call ``await router.gate.admit(partition, event_time)``.

Agents on this app must use ``concurrency=AGENT_CONCURRENCY`` (1): faust may commit past an
in-flight event with more (faust-streaming #606).
"""

from __future__ import annotations

import logging
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.types import TransportT
from mode.types.signals import BaseSignalT
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from consentgate.router.consent_gate import AdminEndOffsets, ConsentGate
from consentgate.router.consent_view import ConsentView
from consentgate.router.delivery import DeliveryGuard, GuardedTransport
from consentgate.router.flow import KeepCurrentGeneration
from consentgate.settings import Settings

__all__ = [
    "AGENT_CONCURRENCY",
    "RouterApp",
    "RouterAppConfig",
    "create_app",
    "create_router",
    "static_member_id",
]

AGENT_CONCURRENCY = 1

#: per-record debug logging on the consent path (recovery loop, fetcher)
HOT_DEBUG_LOGGERS = ("faust.tables.recovery", "faust.transport.consumer", "aiokafka")


@dataclass(frozen=True, kw_only=True)
class RouterAppConfig:
    """What a router worker needs to know about its cluster and topics."""

    bootstrap: str
    app_id: str = "consentgate-router"
    consent_topic: str = "consent.state.v1"
    partitions: int = 6
    store: str = "memory://"
    recovery_buffer_size: int = 1  # anything else breaks live consent updates (tests only)
    instance_id: str | None = None  # static membership id; unique per worker process
    web_enabled: bool = True
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    datadir: Path | None = None
    session_timeout: float = 30.0
    consent_wait: float = 2.0  # gate: longest wait for a fresh enough view, then stale
    clock_skew: float = 0.0  # gate: the view must be as new as event time + this
    gate_poll_interval: float = 0.1  # gate: end-offset polling period (plus on demand)


@dataclass(frozen=True)
class RouterApp:
    """The faust app, its consent view and its time-correct gate."""

    app: RouterFaustApp
    consent: ConsentView
    gate: ConsentGate


def _credentials(settings: Settings) -> faust.SASLCredentials | None:
    if not settings.sasl_mechanism:
        return None
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    context = (
        ssl.create_default_context() if settings.security_protocol.upper() == "SASL_SSL" else None
    )
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=password,
        mechanism=settings.sasl_mechanism,
        ssl_context=context,
    )


def static_member_id(instance_id: str, web_host: str, web_port: int) -> str:
    """``group.instance.id`` for a worker: its id plus its canonical URL, Kafka-safe."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{instance_id}.{web_host}.{web_port}")[:249]


def _quiet_hot_loggers() -> None:
    for name in HOT_DEBUG_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:  # leave explicit choices alone
            logger.setLevel(logging.INFO)


class RouterFaustApp(faust.App):
    """faust's App with flow control that keeps the current generation's records, and a
    consumer that will not commit past an output Kafka refused (:mod:`.delivery`)."""

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return KeepCurrentGeneration(loop=self.loop)

    @cached_property
    def delivery_guard(self) -> DeliveryGuard:
        return DeliveryGuard()

    def _new_transport(self) -> TransportT:
        url = self.conf.broker_consumer[0]
        if url.scheme != "kafka":  # pragma: no cover - create_app always uses kafka://
            raise ValueError(f"the router needs the kafka:// (aiokafka) transport, not {url}")
        return GuardedTransport(self.conf.broker_consumer, self)


def create_app(config: RouterAppConfig, settings: Settings | None = None) -> RouterFaustApp:
    """A faust App with the router's settings and no agents, tables or topics yet."""
    settings = settings or Settings()
    _quiet_hot_loggers()
    datadir = config.datadir or settings.state_dir / "router" / config.app_id
    return RouterFaustApp(
        config.app_id,
        broker=[f"kafka://{server.strip()}" for server in config.bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        processing_guarantee="at_least_once",
        store=config.store,
        topic_partitions=config.partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        table_standby_replicas=0,
        consumer_group_instance_id=(
            static_member_id(config.instance_id, config.web_host, config.web_port)
            if config.instance_id
            else None
        ),
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=config.session_timeout,
        producer_acks=-1,
        web_enabled=config.web_enabled,
        web_host=config.web_host,
        web_port=config.web_port,
        web_bind=config.web_host,
        web_tables_enabled=False,
        web_router_enabled=False,
        datadir=str(datadir),
        autodiscover=False,
    )


def create_router(config: RouterAppConfig, settings: Settings | None = None) -> RouterApp:
    """The app, its read-only consent view over ``config.consent_topic`` and the gate."""
    settings = settings or Settings()
    app = create_app(config, settings)
    view = ConsentView(
        app,
        topic=config.consent_topic,
        partitions=config.partitions,
        store=config.store,
        recovery_buffer_size=config.recovery_buffer_size,
    )
    gate = ConsentGate(
        AdminEndOffsets(settings.kafka_config(config.bootstrap)),
        topic=config.consent_topic,
        partitions=config.partitions,
        max_wait=config.consent_wait,
        clock_skew=config.clock_skew,
        poll_interval=config.gate_poll_interval,
    )
    view.add_listener(gate)
    app.task(gate.run)

    def _warm_gate(sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
        gate.warm_up()  # recovery runs meanwhile; polling itself starts once the worker is ready

    app.on_partitions_assigned.connect(_warm_gate)  # strong reference (weak=False)

    return RouterApp(app, view, gate)
