"""``consentgate router``: run a router worker (Ctrl-C / SIGTERM to stop)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from consentgate.router.run import DEFAULT_POLICY, RouterOptions, run

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "router", help="run the consent router (a faust-streaming worker)"
    )
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy file")
    parser.add_argument("--app-id", default="consentgate-router", help="consumer group / app id")
    parser.add_argument("--instance-id", help="static membership id (unique per process)")
    parser.add_argument("--web-port", type=int, default=6066, help="/healthz /readyz /metrics")
    parser.add_argument("--consent-wait", type=float, help="seconds an event may wait at the gate")
    parser.add_argument(
        "--store", default="memory://", help="faust table store (memory://, rocksdb://)"
    )
    parser.add_argument(
        "--gate-skew",
        type=float,
        default=0.0,
        help="the gate waits for consent observed at event time + this",
    )
    parser.add_argument("--consent-topic", default="consent.state.v1")
    parser.add_argument("--changes-topic", default="consent.changes.v1")
    parser.add_argument("--decisions-topic", default="consentgate.decisions.v1")
    parser.add_argument("--provisions-topic", default="consentgate.provisions.v1")
    parser.add_argument("--dlq-topic", default="consentgate.dlq.v1")
    parser.add_argument("--loglevel", default="info")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    options = RouterOptions(
        policy=args.policy,
        app_id=args.app_id,
        instance_id=args.instance_id,
        web_port=args.web_port,
        consent_wait=args.consent_wait,
        store=args.store,
        gate_skew=args.gate_skew,
        consent_topic=args.consent_topic,
        changes_topic=args.changes_topic,
        decisions_topic=args.decisions_topic,
        provisions_topic=args.provisions_topic,
        dlq_topic=args.dlq_topic,
    )
    return run(options, loglevel=args.loglevel)
