"""``consentgate consent fold``: check the topics, then run the fold worker until stopped.

Exit codes: 0 stopped; 70 a batch could not be committed (nothing of it acknowledged; fold
again by restarting); 78 refused to start (no cluster, missing topics, partition counts
that differ between consent-changes and consent-state, an invalid policy).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import faust
from confluent_kafka.admin import AdminClient

from consentgate.consent.fold_app import FoldShell, build_app, serve_health
from consentgate.consent.fold_config import FoldConfig
from consentgate.consent.fold_writer import FoldWriter
from consentgate.errors import ConfigError, ConsentgateError
from consentgate.ops.topics import check_copartitioned
from consentgate.policy.load import load_policy
from consentgate.serde import Serde, SerdeSettings
from consentgate.settings import Settings

__all__ = ["EXIT_CONFIG", "run_fold"]

log = logging.getLogger(__name__)

EXIT_CONFIG = 78


def run_fold(config: FoldConfig, policy_path: Path, *, loglevel: str = "info") -> int:
    settings = Settings()
    try:
        policy = load_policy(policy_path)
        kafka = settings.kafka_config(config.bootstrap, logger=logging.getLogger("librdkafka"))
        admin = AdminClient(kafka)
        topics = config.topics
        partitions = check_copartitioned(admin, [topics.changes, topics.state])
        existing = set(admin.list_topics(timeout=30).topics)
        if topics.dead_letters not in existing:
            raise ConfigError(f"dead-letter topic {topics.dead_letters} missing")
    except ConsentgateError as exc:
        log.error("consent fold refused to start: %s", exc)
        return EXIT_CONFIG
    writer = FoldWriter(
        kafka,
        topics,
        Serde.from_settings(SerdeSettings()),
        partitions=partitions,
        horizon_days=policy.defaults.history_horizon_days,
    )
    shell = FoldShell(writer)
    if config.web_port >= 0:
        serve_health(shell, config.web_host, config.web_port)
    app = build_app(_with_credentials(config, settings), shell)
    log.info(
        "consent fold %s: %s -> %s, %d partitions, history horizon %d days",
        config.group,
        topics.changes,
        topics.state,
        partitions,
        policy.defaults.history_horizon_days,
    )
    worker = faust.Worker(
        app, loglevel=loglevel, quiet=True, redirect_stdouts=False, override_logging=False
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    else:
        code = 0
    finally:
        shell.executor.shutdown(wait=True)
        writer.close()
    log.info("consent fold stopped (exit %d)", code)
    return code


def _with_credentials(config: FoldConfig, settings: Settings) -> FoldConfig:
    """The fold's aiokafka credentials: SASL, TLS, or both, as the settings say."""
    context = settings.ssl_context()
    if not settings.sasl_mechanism:
        if context is None:
            return config
        return replace(config, credentials=faust.SSLCredentials(context))
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    creds = faust.SASLCredentials(
        username=settings.sasl_username or "",
        password=password,
        mechanism=settings.sasl_mechanism,
        ssl_context=context,
    )
    return replace(config, credentials=creds)
