"""Starting a router worker: settings -> startup checks -> the wired loop -> run until stopped.

Exit codes (documented in README.md and docs/router-internals.md):

- 0: stopped by SIGTERM/SIGINT; the open transaction was committed, the group left.
- 70: fail-stop: an output Kafka kept refusing (``max_aborts`` aborted transactions in a
  row), a fatal Kafka error (fenced by a newer instance with the same transactional.id,
  authorisation), a consent partition that would not load, or a shadow-check mismatch.
  Nothing past the last commit is committed; a restarted worker resumes from there.
- 78: refused to start: invalid settings or policy, a missing pseudonym key, missing
  topics, or co-partitioned topics whose partition counts differ.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
from dataclasses import dataclass
from types import FrameType
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from consentgate.errors import ConfigError, ConsentgateError
from consentgate.ops.topics import check_copartitioned
from consentgate.policy import PseudonymKeys, load_policy, pseudonym_key_names
from consentgate.router.config import RouterConfig
from consentgate.router.emit import Emitter
from consentgate.router.judge import Judge
from consentgate.router.loop import RouterLoop
from consentgate.router.metrics import RouterMetrics
from consentgate.router.offsets import EndOffsetPoller
from consentgate.router.outputs import OutputTopics
from consentgate.router.plan import Router
from consentgate.router.rebalance import subscribe
from consentgate.router.stall import StallGuard
from consentgate.router.state import LoopState
from consentgate.router.txn import Fatal, Outbox
from consentgate.router.view import ConsentView, ViewLoadError
from consentgate.router.web import WebServer
from consentgate.serde import Serde, SerdeSettings
from consentgate.settings import Settings

__all__ = ["EXIT_CONFIG", "EXIT_FATAL", "Worker", "build", "run"]

log = logging.getLogger(__name__)

EXIT_FATAL = 70
EXIT_CONFIG = 78


@dataclass
class Worker:
    state: LoopState
    loop: RouterLoop
    view: ConsentView
    pollers: tuple[EndOffsetPoller, ...]  # consent.state, consent.changes
    web: WebServer | None
    outputs: list[str]
    inputs: list[str]
    kafka: dict[str, Any]

    def missing_topics(self) -> list[str]:
        """The inputs and outputs that no longer exist (deleted under the running router);
        empty when the cluster cannot say."""
        try:
            return _absent(AdminClient(self.kafka), [*self.inputs, *self.outputs], timeout=5)
        except Exception:  # noqa: BLE001 - best effort, for the error message only
            return []


def _absent(admin: AdminClient, topics: list[str], timeout: float) -> list[str]:
    """Those of ``topics`` the cluster does not have."""
    existing = admin.list_topics(timeout=timeout).topics
    return [name for name in topics if name not in existing]


def build(config: RouterConfig, settings: Settings | None = None) -> Worker:
    """Check everything that can be checked before joining the group; ConfigError if wrong."""
    settings = settings or Settings()
    if not settings.bootstrap:
        raise ConfigError("no cluster: set CONSENTGATE_BOOTSTRAP (host:port[,host:port])")
    policy = load_policy(config.policy)
    keys = PseudonymKeys.from_settings()
    keys.check(pseudonym_key_names(policy.sinks))
    # librdkafka's own log lines go through Python logging (one format for operators)
    kafka = settings.kafka_config(None, logger=logging.getLogger("librdkafka"))
    t = config.topics
    admin = AdminClient(kafka)
    copartitioned = [s.topic for s in policy.sources]
    copartitioned += [t.consent_state, t.consent_changes, t.provisions]
    partitions = check_copartitioned(admin, copartitioned)
    outputs = sorted({s.topic for s in policy.sinks} | {t.decisions, t.dead_letters})
    missing = _absent(admin, outputs, timeout=30)
    if missing:
        raise ConfigError(f"output topics missing (create them first): {', '.join(missing)}")
    wait = config.gate.consent_wait
    if wait is None:
        wait = policy.defaults.consent_wait.total_seconds()
    state = LoopState(
        config=config,
        policy=policy,
        metrics=RouterMetrics(),
        partitions=partitions,
        consent_wait=wait,
    )
    core = Router(
        policy,
        Serde.from_settings(SerdeSettings()),
        keys,
        OutputTopics(decisions=t.decisions, provisions=t.provisions, dead_letters=t.dead_letters),
        timeline_memory=config.loop.timeline_memory,
    )
    call_timeout = config.loop.transaction_timeout_ms / 1000
    outbox = Outbox(
        timeout=call_timeout,
        stall=StallGuard(2 * call_timeout + 15, exit_code=EXIT_FATAL),
        config=settings.producer_config(
            None,
            **{
                "logger": kafka["logger"],
                "transactional.id": config.transactional_id,
                "transaction.timeout.ms": config.loop.transaction_timeout_ms,
                "linger.ms": 5,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 524_288,
                # the first AddPartitions of a transaction meets CONCURRENT_TRANSACTIONS while
                # the previous one's markers are written: back off briefly, not 100 ms-1 s
                "retry.backoff.ms": 10,
                "retry.backoff.max.ms": 100,
            },
        ),
    )
    consumer = Consumer(
        settings.kafka_config(
            None,
            **{
                "logger": kafka["logger"],
                "group.id": config.app_id,
                "group.instance.id": config.member_id,
                "partition.assignment.strategy": "range",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 10_000,
                # a changes partition's EOF says how far the loop has read it (the gate)
                "enable.partition.eof": True,
            },
        )
    )
    view = ConsentView(kafka, t.consent_state)
    poller = EndOffsetPoller(kafka, t.consent_state, interval=config.gate.poll_interval)
    changes_poller = EndOffsetPoller(kafka, t.consent_changes, interval=config.gate.poll_interval)
    loop = RouterLoop(
        state=state,
        consumer=consumer,
        outbox=outbox,
        view=view,
        poller=poller,
        changes_poller=changes_poller,
        judge=Judge(core, partitions),
        emitter=Emitter(state, outbox, core, kafka),
    )
    web = WebServer(state, config.web.host, config.web.port) if config.web.enabled else None
    log.info(
        "router %s (%s) on %s: %d sources, %d sinks, policy %s, %d partitions, consent wait %.1f s",
        config.app_id,
        config.transactional_id,
        settings.bootstrap,
        len(policy.sources),
        len(policy.sinks),
        policy.version,
        partitions,
        wait,
    )
    inputs = [*(s.topic for s in policy.sources), t.consent_changes, t.consent_state]
    return Worker(
        state, loop, view, (poller, changes_poller), web, [*outputs, t.provisions], inputs, kafka
    )


def run(config: RouterConfig) -> int:
    """Run a worker until SIGTERM/SIGINT; the exit code (see the module docstring)."""
    try:
        worker = build(config)
    except ConsentgateError as exc:
        log.error("router refused to start: %s", exc)
        return EXIT_CONFIG
    loop = worker.loop

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        loop.stopping = True

    # the loop allocates many short-lived objects per event and keeps caches of long-lived
    # ones: collect the young generation less often, the old one rarely (profiled)
    gc.set_threshold(config.loop.gc_gen0, 20, 100)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if worker.web is not None:
        worker.web.start()
    code = 0
    if loop.outbox.stall is not None:
        loop.outbox.stall.start()
    try:
        loop.outbox.init()
        loop.outbox.warm(worker.outputs)
        for poller in worker.pollers:
            poller.start()
        subscribe(loop)
        loop.run()
    except Exception as exc:
        worker.state.fatal = str(exc) or type(exc).__name__
        worker.state.set_ready_gauge()
        known = isinstance(exc, (Fatal, ViewLoadError, ConsentgateError))
        gone = worker.missing_topics()
        if gone:
            log.error("topics deleted under the running router: %s", ", ".join(gone))
        log.error(
            "router stops without committing (exit %d): %s",
            EXIT_FATAL,
            exc,
            exc_info=not known,
        )
        code = EXIT_FATAL
        with contextlib.suppress(Exception):
            loop.outbox.abort()
    finally:
        if code == 0:
            loop.consumer.close()  # leaves the group; nothing auto-commits
            loop.outbox.close()
        for poller in worker.pollers:
            poller.stop()
        worker.view.close()
        if worker.web is not None:
            worker.web.stop()
        if loop.outbox.stall is not None:
            loop.outbox.stall.stop()
    log.info("router stopped (exit %d)", code)
    return code
