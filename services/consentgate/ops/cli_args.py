"""Argument types and options the operators' commands share: times, and topic overrides.

``iso_time`` is the one parser of a time on a command line (ISO 8601 with an offset: a time
without one is refused rather than guessed). ``add_topic_options`` / ``router_topics`` give a
command ``--changes-topic``-style overrides of the router's topic names
(``RouterConfig.topics``), so every command names the same topics the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from datetime import datetime

from consentgate.router.config import RouterConfig, TopicsSection

__all__ = ["TOPIC_OPTIONS", "add_topic_options", "iso_time", "router_topics"]

# command-line option (dest) -> the router's TopicsSection field
TOPIC_OPTIONS = {
    "changes_topic": "consent_changes",
    "state_topic": "consent_state",
    "decisions_topic": "decisions",
    "provisions_topic": "provisions",
    "dlq_topic": "dead_letters",
}


def iso_time(text: str) -> datetime:
    """An argparse type: ISO 8601 with an offset (``2026-12-01T09:00+09:00``, ``...Z``)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: not an ISO 8601 time") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give an offset (e.g. +09:00 or Z)")
    return value


def add_topic_options(parser: argparse.ArgumentParser, options: Iterable[str]) -> None:
    """``--<option>`` for each of ``options`` (keys of :data:`TOPIC_OPTIONS`)."""
    for option in options:
        if option not in TOPIC_OPTIONS:
            raise ValueError(f"unknown topic option {option!r}")
        parser.add_argument("--" + option.replace("_", "-"), dest=option, help="topic name")


def router_topics(args: argparse.Namespace, config: RouterConfig) -> TopicsSection:
    """The router's topic names with the command line's overrides applied."""
    named = {
        field: value
        for option, field in TOPIC_OPTIONS.items()
        if (value := getattr(args, option, None))
    }
    return config.topics.model_copy(update=named) if named else config.topics
