"""``consentgate topics apply | check``: topics as code (deploy/topics.yaml)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from consentgate.cluster import resolve_bootstrap
from consentgate.ops.topics import apply, check_copartitioned, load_spec
from consentgate.settings import Settings

__all__ = ["register"]

DEFAULT_FILE = Path("deploy/topics.yaml")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("topics", help="create/alter topics from deploy/topics.yaml")
    sub = parser.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    run = sub.add_parser("apply", help="make the cluster match the declaration (idempotent)")
    run.add_argument("--file", type=Path, default=DEFAULT_FILE, help="default: %(default)s")
    run.add_argument(
        "--dry-run", action="store_true", help="validate on the broker, change nothing"
    )
    run.add_argument(
        "--increase-partitions",
        action="store_true",
        help="add partitions where the declaration has more (never removes any)",
    )
    run.set_defaults(handler=_apply)
    check = sub.add_parser("check", help="verify every co-partition group on the cluster")
    check.add_argument("--file", type=Path, default=DEFAULT_FILE, help="default: %(default)s")
    check.set_defaults(handler=_check)


def _admin() -> AdminClient:
    settings = Settings()
    return AdminClient(settings.kafka_config(resolve_bootstrap(settings)))


def _apply(args: argparse.Namespace) -> int:
    spec = load_spec(args.file)
    report = apply(
        _admin(), spec, dry_run=args.dry_run, allow_partition_increase=args.increase_partitions
    )
    for line in report.lines():
        print(line)
    return 0


def _check(args: argparse.Namespace) -> int:
    spec = load_spec(args.file)
    admin = _admin()
    for group, members in spec.copartition.items():
        count = check_copartitioned(admin, members)
        print(f"{group}: {count} partitions: {', '.join(members)}")
    return 0
