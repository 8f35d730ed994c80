"""``consentgate consent import FILE``: bulk load consent changes (CSV or JSONL) through the
consent service's write path (:mod:`consentgate.consent.importer`; docs/consent-import.md).

Exit status: 0 every row appended; 1 some rows rejected or not acknowledged (see the
rejects file); 2 usage errors (no file, unknown format, bad CSV header, no such topic, no
cluster); 130 interrupted (what was submitted is drained first).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from consentgate.consent.changelog import ChangeLog
from consentgate.consent.cli import CHANGES, _kafka
from consentgate.consent.importer import Importer, ImportUsageError, detect_format
from consentgate.consent.service import ConsentService
from consentgate.policy.load import load_policy
from consentgate.router.config import DEFAULT_POLICY
from consentgate.serde import Serde, SerdeSettings

__all__ = ["register"]

log = logging.getLogger(__name__)

LINGER_MS = 20
"""The import's producer linger: bigger batches than an interactive write (2 ms)."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "import",
        help="bulk load consent changes from a CSV or JSONL file",
        description="Bulk load consent changes (GRANT, WITHDRAW, ERASE) from a CSV or JSONL "
        "file through the consent service's rules and write path. Rejected rows go to the "
        "rejects file. Exit 0: all appended; 1: some rejected; 2: usage error.",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="a .csv, .jsonl or .ndjson file")
    p.add_argument("--format", choices=("csv", "jsonl"), help="default: from the extension")
    p.add_argument(
        "--rejects", type=Path, help="where rejected rows go (JSONL; default FILE.rejects.jsonl)"
    )
    p.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy file")
    p.add_argument("--changes-topic", default=CHANGES)
    p.add_argument(
        "--actor", help="who makes the changes (default import:<OS user>); part of each change"
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=50_000,
        metavar="N",
        help="unacknowledged appends at most (default 50,000)",
    )
    p.set_defaults(handler=_import)


def _import(args: argparse.Namespace) -> int:
    path: Path = args.file
    rejects: Path = args.rejects or path.with_name(path.name + ".rejects.jsonl")
    try:
        fmt = detect_format(path, args.format)
        if not path.is_file():
            raise ImportUsageError(f"{path}: no such file")
        if args.max_in_flight < 1:
            raise ImportUsageError("--max-in-flight must be at least 1")
    except ImportUsageError as exc:
        print(f"consentgate consent import: {exc}", file=sys.stderr)
        return 2
    policy = load_policy(args.policy)
    kafka = _kafka()
    if not _topic_exists(kafka, args.changes_topic):
        print(
            f"consentgate consent import: topic {args.changes_topic} not found "
            "(consentgate topics apply, or --changes-topic)",
            file=sys.stderr,
        )
        return 2
    changelog = ChangeLog(
        kafka, args.changes_topic, Serde.from_settings(SerdeSettings()), linger_ms=LINGER_MS
    )
    service = ConsentService(policy, changelog)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    importer = Importer(
        service,
        actor=args.actor or f"import:{getpass.getuser()}",
        max_in_flight=args.max_in_flight,
        progress=progress,
    )
    try:
        summary = importer.run(path, rejects, fmt)
    except ImportUsageError as exc:
        print(f"consentgate consent import: {exc}", file=sys.stderr)
        return 2
    finally:
        changelog.close()
    print(summary.render())
    return summary.exit_code


def _topic_exists(kafka: dict[str, Any], topic: str) -> bool:
    meta = AdminClient(kafka).list_topics(topic, timeout=30)
    found = meta.topics.get(topic)
    return found is not None and found.error is None and bool(found.partitions)
