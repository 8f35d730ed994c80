"""The console inside ``consentgate consent serve``: its settings from the environment,
the topics of the reports (consent topics from serve's options, the router's others from
``CONSENTGATE_ROUTER_TOPICS__*`` as ``consentgate report`` reads them) and the pseudonym
keys, if this process has them (``CONSENTGATE_PSEUDONYM_*``)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from consentgate.console.app import build_console, mount_console
from consentgate.console.settings import ConsoleSettings
from consentgate.errors import ConfigError
from consentgate.ops.report import ReportTopics
from consentgate.policy import Policy, PseudonymKeys
from consentgate.router.config import RouterConfig
from consentgate.serde import Serde

__all__ = ["console_mount"]

log = logging.getLogger(__name__)


def _keys() -> PseudonymKeys | None:
    try:
        return PseudonymKeys.from_settings()
    except (ConfigError, ValueError):
        return None  # the reports then use the provision ledger's keys


def console_mount(
    args: argparse.Namespace, kafka: dict[str, Any], policy: Policy, serde: Serde
) -> Callable[[FastAPI], None] | None:
    """The console's mount for serve (None: not configured); ValueError, ConfigError for
    unusable settings."""
    settings = ConsoleSettings()
    topics = RouterConfig.build().topics
    console = build_console(
        settings,
        kafka=kafka,
        policy=policy,
        serde=serde,
        topics=ReportTopics(
            changes=args.changes_topic,
            state=args.state_topic,
            decisions=topics.decisions,
            provisions=topics.provisions,
        ),
        dead_letters=topics.dead_letters,
        keys=_keys(),
    )
    if console is None:
        log.info("console: off (set CONSENTGATE_CONSOLE_USER, _PASSWORD[_HASH], _SESSION_KEY)")
        return None
    log.info(
        "console: operators %s, subjects' links %s",
        "on" if console.credentials else "off",
        "on" if console.links else "off",
    )
    return mount_console(console)
