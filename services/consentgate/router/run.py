"""Starting a router worker: settings → startup checks → wired faust app → faust Worker.

Startup refuses to run (ConfigError, clear message) when the policy is invalid, a pseudonym
key is missing, or the co-partitioned topics (every source, ``consent.state``,
``consent.changes``) disagree on their partition count.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from consentgate.cluster import resolve_bootstrap
from consentgate.ops.topics import check_copartitioned
from consentgate.policy import Policy, load_policy
from consentgate.router.app import RouterAppConfig
from consentgate.router.outputs import OutputTopics
from consentgate.router.worker import RouterWorker, build_worker, describe
from consentgate.settings import Settings

__all__ = ["RouterOptions", "make_worker", "run"]

log = logging.getLogger(__name__)

DEFAULT_POLICY = Path(__file__).resolve().parents[3] / "deploy" / "policy.yaml"


@dataclass(frozen=True, kw_only=True)
class RouterOptions:
    policy: Path = DEFAULT_POLICY
    app_id: str = "consentgate-router"
    instance_id: str | None = None
    web_port: int = 6066
    web_enabled: bool = True
    consent_topic: str = "consent.state.v1"
    changes_topic: str = "consent.changes.v1"
    consent_wait: float | None = None  # default: the policy's consent_wait_seconds
    # The gate waits for a consent view observed at or after event time + gate_skew. The
    # policy's clock_skew only bounds how far ahead an event may be (validation): waiting it
    # out for every event would add that much latency to all of them.
    gate_skew: float = 0.0
    decisions_topic: str = "consentgate.decisions.v1"
    provisions_topic: str = "consentgate.provisions.v1"
    dlq_topic: str = "consentgate.dlq.v1"
    store: str = "memory://"
    datadir: Path | None = None

    @classmethod
    def from_env(cls) -> RouterOptions:
        env = os.environ
        return cls(
            policy=Path(env.get("CONSENTGATE_POLICY", str(DEFAULT_POLICY))),
            app_id=env.get("CONSENTGATE_ROUTER_APP_ID", "consentgate-router"),
            instance_id=env.get("CONSENTGATE_ROUTER_INSTANCE_ID") or None,
            web_port=int(env.get("CONSENTGATE_ROUTER_WEB_PORT", "6066")),
        )


def make_worker(options: RouterOptions, settings: Settings | None = None) -> RouterWorker:
    settings = settings or Settings()
    (options.datadir or settings.state_dir / "router").mkdir(parents=True, exist_ok=True)
    policy: Policy = load_policy(options.policy)
    bootstrap = resolve_bootstrap(settings)
    admin = AdminClient(settings.kafka_config(bootstrap))
    copartitioned = [s.topic for s in policy.sources]
    copartitioned += [options.consent_topic, options.changes_topic]
    partitions = check_copartitioned(admin, copartitioned)
    wait = options.consent_wait
    if wait is None:
        wait = policy.defaults.consent_wait.total_seconds()
    config = RouterAppConfig(
        bootstrap=bootstrap,
        app_id=options.app_id,
        consent_topic=options.consent_topic,
        partitions=partitions,
        store=options.store,
        instance_id=options.instance_id or f"{socket.gethostname()}-{options.web_port}",
        web_enabled=options.web_enabled,
        web_port=options.web_port,
        datadir=options.datadir,
        consent_wait=wait,
        clock_skew=options.gate_skew,
    )
    topics = OutputTopics(
        decisions=options.decisions_topic,
        provisions=options.provisions_topic,
        dead_letters=options.dlq_topic,
    )
    worker = build_worker(
        config, policy, settings, topics=topics, changes_topic=options.changes_topic
    )
    log.info("router %s on %s: %s", options.app_id, bootstrap, describe(worker))
    return worker


def run(options: RouterOptions, loglevel: str = "info") -> int:
    """Run a worker until SIGTERM/SIGINT."""
    from faust import Worker  # noqa: PLC0415 - heavy import only when running

    worker = make_worker(options)
    Worker(worker.app, loglevel=loglevel).execute_from_commandline()
    return 0
