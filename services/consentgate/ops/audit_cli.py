"""``consentgate audit [--sinks ...] [--since TIME] [--json] [--html FILE]``: the independent
audit (:mod:`consentgate.ops.audit`) over what the cluster holds now.

Topic names are the router's (``--config`` / ``CONSENTGATE_ROUTER_TOPICS__*``), each
overridable here; sinks come from the policy, and from each ``--past-policy`` file (sinks a
previous policy wrote are judged too). Pseudonym keys (``CONSENTGATE_PSEUDONYM_*``) are needed:
the audit recomputes subject keys and partner-scoped event ids. Exit status: 0 PASS, 1 any
finding (a leak, an unjudgeable record, ...), 2 the audit could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from consentgate.cluster import resolve_bootstrap
from consentgate.ops.audit import AuditOptions, AuditTopics, parse_sinks, policies_of, run_audit
from consentgate.ops.audit_html import render_html
from consentgate.ops.cli_args import add_topic_options, iso_time, router_topics
from consentgate.policy import PseudonymKeys, load_policy
from consentgate.router.config import RouterConfig
from consentgate.serde import Serde
from consentgate.settings import Settings

__all__ = ["register"]

_TOPICS = ("changes_topic", "decisions_topic", "provisions_topic", "dlq_topic")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="re-judge every sink record with an independent rule; exit 1 on any finding",
    )
    parser.add_argument(
        "--sinks", nargs="+", metavar="SINK", help="only these sinks (names or topics)"
    )
    parser.add_argument(
        "--since", type=iso_time, metavar="TIME", help="only records decided at or after TIME"
    )
    parser.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    parser.add_argument("--html", type=Path, metavar="FILE", help="also write an HTML report")
    parser.add_argument("--policy", type=Path, help="policy file (default: the router's)")
    parser.add_argument(
        "--past-policy",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a policy in force before (repeatable): its sinks are audited too",
    )
    parser.add_argument(
        "--lag",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how far the router's consent view may trail the change log (default 5)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a change younger than this may still be awaiting its retraction (default 30)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        metavar="N",
        help="processes judging the sinks (default: 2, or 1 on a single CPU)",
    )
    parser.add_argument("--config", type=Path, help="the router's YAML settings file")
    add_topic_options(parser, _TOPICS)
    parser.set_defaults(handler=_audit)


def _audit(args: argparse.Namespace) -> int:
    config = RouterConfig.build(args.config)
    t = router_topics(args, config)
    topics = AuditTopics(t.consent_changes, t.decisions, t.dead_letters, t.provisions)
    policy = load_policy(args.policy or config.policy)
    options = AuditOptions(
        lag=timedelta(seconds=args.lag),
        settle=timedelta(seconds=args.settle),
        since=args.since,
        sinks=parse_sinks(args.sinks),
        past_policies=policies_of(args.past_policy),
        workers=max(1, args.workers),
    )
    settings = Settings()
    kafka = settings.kafka_config(resolve_bootstrap(settings))
    report = run_audit(
        kafka,
        policy,
        Serde.from_settings(),
        topics,
        keys=PseudonymKeys.from_settings(),
        options=options,
        progress=lambda m: print(f"  {m}", file=sys.stderr),
    )
    data = report.to_json()
    if args.html is not None:
        args.html.write_text(render_html(data), encoding="utf-8")
        print(f"HTML report written to {args.html}", file=sys.stderr)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(report.render())
    return 0 if report.ok else 1
