"""``consentgate retract``: retract one subject's data from the sinks, by every key they hold
it under (see :mod:`consentgate.ops.retract`).

Settings as for ``consentgate router`` (``--policy``/``--config``, ``CONSENTGATE_ROUTER_*``,
``CONSENTGATE_BOOTSTRAP``, ``CONSENTGATE_PSEUDONYM_*``). Exit codes: 0 done, 2 bad arguments
or settings, 70 Kafka failed (nothing was written: the records go in one transaction).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from consentgate.errors import ConfigError, ConsentgateError
from consentgate.policy import PseudonymKeys, load_policy, pseudonym_key_names
from consentgate.router.config import RouterConfig
from consentgate.settings import Settings

__all__ = ["register"]

EXIT_BAD_ARGS = 2
EXIT_KAFKA = 70


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "retract",
        help="retract a subject's data from the sinks under every key they hold it by",
        description="Write one null-value record per (sink, key) under which a retractable "
        "sink holds the subject's data (current key, keys in the provision ledger, keys of "
        "records of the subject's events), in one transaction. Exit codes: 0 done, 2 bad "
        "arguments, 70 Kafka failure.",
    )
    parser.add_argument("--subject", required=True, help="the subject id")
    parser.add_argument("--sinks", help="NAME,... (default: every retractable sink)")
    parser.add_argument("--reason", required=True, help="why (the cg-reason header)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be written")
    parser.add_argument("--policy", type=Path, help="policy file (default: the router's)")
    parser.add_argument("--config", type=Path, help="the router's settings file (topics)")
    parser.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        return _retract(args)
    except ConfigError as exc:
        print(f"consentgate retract: error: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGS
    except (KafkaException, ConsentgateError) as exc:
        print(f"consentgate retract: failed (exit {EXIT_KAFKA}): {exc}", file=sys.stderr)
        return EXIT_KAFKA


def _retract(args: argparse.Namespace) -> int:
    # librdkafka clients, the serde and the policy: only when the command runs
    from consentgate.ops import retract as r  # noqa: PLC0415
    from consentgate.serde import Serde, SerdeSettings  # noqa: PLC0415

    subject, reason = args.subject.strip(), args.reason.strip()
    if not subject or not reason:
        raise ConfigError("--subject and --reason must not be empty")
    config = RouterConfig.build(args.config, {"policy": args.policy})
    settings = Settings()
    if not settings.bootstrap:
        raise ConfigError("no cluster: set CONSENTGATE_BOOTSTRAP (host:port[,host:port])")
    policy = load_policy(config.policy)
    names = [n.strip() for n in args.sinks.split(",") if n.strip()] if args.sinks else None
    sinks = r.affected_sinks(policy, names)
    keys = PseudonymKeys.from_settings()
    keys.check(pseudonym_key_names(sinks))
    kafka = settings.kafka_config(None, logger=logging.getLogger("librdkafka"))
    serde = Serde.from_settings(SerdeSettings())
    t = config.topics
    ledger = r.ledger_keys(kafka, t.provisions, subject, serde)
    events = r.subject_events(kafka, t.decisions, subject, serde)
    records = r.record_keys(kafka, sinks, events, keys, serde)
    plan = r.plan_retractions(sinks, subject, keys, ledger, records)
    outputs = [r.manual_retraction(item, reason, policy.version) for item in plan]
    if not args.dry_run:
        r.write_retractions(settings, kafka, subject, outputs)
    verb = "would write" if args.dry_run else "wrote"
    if args.json:
        print(
            json.dumps(
                {
                    "subject": subject,
                    "dry_run": args.dry_run,
                    "events_found": len(events),
                    "retractions": [
                        {
                            "sink": item.sink.name,
                            "topic": item.sink.topic,
                            "key": item.key.decode("utf-8", "replace"),
                            "found_by": list(item.found_by),
                        }
                        for item in plan
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(f"{verb} {len(outputs)} retractions (one transaction) for {subject!r}: {reason}")
    for item in plan:
        print(
            f"  {item.sink.name:<36} {item.sink.topic:<44} "
            f"{item.key.decode('utf-8', 'replace')}  ({', '.join(item.found_by)})"
        )
    return 0
