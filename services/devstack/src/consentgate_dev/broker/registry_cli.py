"""``consentgate registry start | stop | status``: a local Confluent-compatible registry.

Apicurio Registry (in-memory storage) from Maven Central; see ``broker/registry.py``.
"""

from __future__ import annotations

import argparse
from typing import Any

from consentgate_dev.broker.registry import registry_status, start_registry, stop_registry
from consentgate_dev.settings import DevSettings

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "registry", help="run a local Confluent-compatible schema registry (Apicurio)"
    )
    sub = parser.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    start = sub.add_parser("start", help="start it (downloads it once, needs Java 21+)")
    start.add_argument("--port", type=int, default=18081)
    start.set_defaults(handler=_start)
    sub.add_parser("stop", help="stop it").set_defaults(handler=_stop)
    sub.add_parser("status", help="its URL and pid").set_defaults(handler=_status)


def _start(args: argparse.Namespace) -> int:
    proc = start_registry(DevSettings().state_dir, port=args.port, progress=print)
    verb = "started" if proc.started else "already running"
    print(f"registry {verb}: {proc.url} (pid {proc.pid}, Apicurio {proc.version})")
    print(f"use it with CONSENTGATE_SCHEMA_REGISTRY_URL={proc.url}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    print("registry stopped" if stop_registry(DevSettings().state_dir) else "registry not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    proc = registry_status(DevSettings().state_dir)
    if proc is None:
        print("registry: stopped")
        return 3
    print(f"registry: running at {proc.url} (pid {proc.pid}, Apicurio {proc.version})")
    return 0
