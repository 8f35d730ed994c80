"""``consentgate acls apply | show``: principals and ACLs as code (``access`` in
deploy/topics.yaml), applied with the cluster admin's credentials from the settings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from consentgate.cluster import resolve_bootstrap
from consentgate.ops.access_spec import load_access
from consentgate.ops.acls import apply_acls
from consentgate.settings import Settings

__all__ = ["register"]

DEFAULT_FILE = Path("deploy/topics.yaml")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "acls", help="apply the principals' ACLs declared in deploy/topics.yaml (least privilege)"
    )
    sub = parser.add_subparsers(dest="acls_command", metavar="ACTION", required=True)
    run = sub.add_parser(
        "apply",
        help="add the missing ACLs and remove the governed principals' others; prints the diff",
    )
    run.add_argument("--file", type=Path, default=DEFAULT_FILE, help="default: %(default)s")
    run.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    run.set_defaults(handler=_apply)
    show = sub.add_parser("show", help="print what each principal may do (no cluster needed)")
    show.add_argument("--file", type=Path, default=DEFAULT_FILE, help="default: %(default)s")
    show.set_defaults(handler=_show)


def _apply(args: argparse.Namespace) -> int:
    access = load_access(args.file)
    settings = Settings()
    admin = AdminClient(settings.kafka_config(resolve_bootstrap(settings)))
    for line in apply_acls(admin, access, dry_run=args.dry_run).lines():
        print(line)
    return 0


def _show(args: argparse.Namespace) -> int:
    access = load_access(args.file)
    for principal in sorted(access.principals):
        print(principal)
        for binding in access.of(principal):
            print(f"  {binding.operation} {str(binding).split(' ', 2)[2]}")
    return 0
