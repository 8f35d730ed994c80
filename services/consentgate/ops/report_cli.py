"""``consentgate report subject ID`` and ``consentgate report recipient ID [--since TIME]``:
the subject's and the recipient's reports from Kafka (see :mod:`consentgate.ops.report`).

Topic names are the router's (``--config`` / ``CONSENTGATE_ROUTER_TOPICS__*``, as
``consentgate router`` reads them), each overridable here; sink topics and recipients come
from the policy. Pseudonym keys (``CONSENTGATE_PSEUDONYM_*``), where this process has them,
let the subject report read only the subject's partition of each sink. Output: a table for
the terminal, ``--csv`` or ``--json`` (see :mod:`consentgate.ops.report_format`).
"""

from __future__ import annotations

import argparse
from datetime import date, datetime
from pathlib import Path
from typing import Any

from consentgate.cluster import resolve_bootstrap
from consentgate.errors import ConfigError
from consentgate.ops.cli_args import add_topic_options, iso_time, router_topics
from consentgate.ops.report import ReportTopics, recipient_report, subject_report
from consentgate.ops.report_format import Report, render_csv, render_json, render_text
from consentgate.policy import Policy, PseudonymKeys, load_policy
from consentgate.router.config import RouterConfig
from consentgate.serde import Serde
from consentgate.settings import Settings

__all__ = ["register"]

_TOPICS = ("changes_topic", "state_topic", "decisions_topic", "provisions_topic")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report", help="a subject's or a recipient's report, from Kafka alone"
    )
    sub = parser.add_subparsers(dest="report_command", metavar="KIND", required=True)
    subject = sub.add_parser(
        "subject",
        help="consent history and state, provisions, retractions and decisions of a subject",
    )
    subject.add_argument("id", metavar="ID", help="the subject id")
    subject.add_argument(
        "--as-of",
        type=iso_time,
        metavar="TIME",
        help="the current state as of this time (ISO 8601 with an offset; default: now)",
    )
    _common(subject)
    subject.set_defaults(handler=_subject)
    recipient = sub.add_parser(
        "recipient", help="the provision record of a recipient (APPI Art. 30)"
    )
    recipient.add_argument("id", metavar="ID", help="the recipient id of the policy")
    recipient.add_argument(
        "--since",
        type=_since,
        metavar="TIME",
        help="provisions from this UTC date on (ISO 8601 date, or time with an offset)",
    )
    _common(recipient)
    recipient.set_defaults(handler=_recipient)


def _common(parser: argparse.ArgumentParser) -> None:
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="stable JSON")
    form.add_argument("--csv", action="store_true", help="CSV with a header row")
    parser.add_argument("--policy", type=Path, help="policy file (default: the router's)")
    parser.add_argument("--config", type=Path, help="the router's YAML settings file")
    add_topic_options(parser, _TOPICS)


def _since(text: str) -> date | datetime:
    if "T" in text or " " in text:
        return iso_time(text)
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: not an ISO 8601 date or time") from exc


def _setup(args: argparse.Namespace) -> tuple[dict[str, Any], Policy, Serde, ReportTopics]:
    config = RouterConfig.build(args.config)
    topics = ReportTopics.of(router_topics(args, config))
    policy = load_policy(args.policy or config.policy)
    settings = Settings()
    kafka = settings.kafka_config(resolve_bootstrap(settings))
    return kafka, policy, Serde.from_settings(), topics


def _print(report: Report, args: argparse.Namespace) -> int:
    if args.json:
        print(render_json(report), end="")
    elif args.csv:
        print(render_csv(report), end="")
    else:
        print(render_text(report))
    return 0


def _keys() -> PseudonymKeys | None:
    try:
        return PseudonymKeys.from_settings()
    except (ConfigError, ValueError):
        return None  # unusable settings: the ledger's keys are used instead


def _subject(args: argparse.Namespace) -> int:
    kafka, policy, serde, topics = _setup(args)
    report = subject_report(
        kafka, policy, serde, args.id, topics=topics, keys=_keys(), now=args.as_of
    )
    return _print(report, args)


def _recipient(args: argparse.Namespace) -> int:
    kafka, policy, serde, topics = _setup(args)
    report = recipient_report(kafka, policy, serde, args.id, topics=topics, since=args.since)
    return _print(report, args)
