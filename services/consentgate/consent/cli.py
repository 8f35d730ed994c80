"""``consentgate consent grant | withdraw | erase``: record a consent change.

The writer first loads the subject timelines from ``consent.state`` (one writer at a time per
topic pair), then appends the change to ``consent.changes`` and publishes the new timeline.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from consentgate.cluster import resolve_bootstrap
from consentgate.consent.writer import ConsentWriter, new_change

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("consent", help="record a consent change for a subject")
    sub = parser.add_subparsers(dest="consent_command", metavar="ACTION", required=True)
    for action in ("grant", "withdraw"):
        p = sub.add_parser(action, help=f"{action} a purpose (for a recipient)")
        p.add_argument("subject")
        p.add_argument("purpose")
        p.add_argument("--recipient", help="partner id; omit for first-party purposes")
        _common(p)
    erase = sub.add_parser("erase", help="erase the subject: every grant ends, data retracted")
    erase.add_argument("subject")
    _common(erase)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--at",
        type=datetime.fromisoformat,
        help="effective time (ISO 8601 with offset; default now)",
    )
    parser.add_argument("--notice-version", help="privacy notice version shown")
    parser.add_argument(
        "--method", default="CLI", choices=["WEB_FORM", "API", "GPC", "TCF", "IMPORT", "CLI"]
    )
    parser.add_argument("--changes-topic", default="consent.changes.v1")
    parser.add_argument("--state-topic", default="consent.state.v1")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    writer = ConsentWriter(
        resolve_bootstrap(), changes_topic=args.changes_topic, state_topic=args.state_topic
    )
    writer.load()
    action = args.consent_command.upper()
    change = new_change(
        args.subject,
        action,
        getattr(args, "purpose", None),
        getattr(args, "recipient", None),
        at=args.at,
        method=args.method,
        notice_version=args.notice_version,
    )
    timeline = writer.write(change)
    writer.flush()
    print(f"{action} {args.subject} {change.purpose or ''} {change.recipient or ''}".rstrip())
    print(f"change {change.change_id}; timeline version {timeline.version}")
    return 0
