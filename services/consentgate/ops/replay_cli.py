"""``consentgate replay``: re-run enforcement over a retained range of a source topic.

The policy, topics, serde, pseudonym keys and cluster come from the router's settings
(``--policy``/``--config`` as for ``consentgate router``, ``CONSENTGATE_ROUTER_*``,
``CONSENTGATE_BOOTSTRAP``, ``CONSENTGATE_PSEUDONYM_*``, ``CONSENTGATE_SCHEMA_REGISTRY_*``).
Exit codes: 0 done, 2 bad arguments or settings, 70 Kafka failed (nothing past the last
commit is committed: run it again with the same ``--id`` to resume). See docs/replay.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from consentgate.errors import ConfigError, ConsentgateError
from consentgate.ops.replay_range import Position, parse_position
from consentgate.router.config import RouterConfig

__all__ = ["EXIT_BAD_ARGS", "EXIT_KAFKA", "register"]

EXIT_BAD_ARGS = 2
EXIT_KAFKA = 70


def _position(option: str) -> Any:
    def parse(text: str) -> Position:
        try:
            return parse_position(text, option)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("--sinks: name at least one sink")
    return names


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="re-run enforcement over a retained range (versioned topics, --live, --dry-run)",
        description="Re-judge a retained range of a source topic with the router's core and "
        "write the outputs into versioned topics (T.<suffix>), or idempotently into the live "
        "sinks (--live, with retractions), or report the difference (--dry-run). Exactly "
        "once and resumable by --id. Exit codes: 0 done, 2 bad arguments, 70 Kafka failure.",
    )
    parser.add_argument("--source", required=True, help="the source topic to replay")
    parser.add_argument(
        "--from",
        dest="start",
        required=True,
        type=_position("--from"),
        help="earliest | an offset | an ISO-8601 time with zone (record timestamps)",
    )
    parser.add_argument(
        "--to",
        dest="end",
        type=_position("--to"),
        help="exclusive end: latest | an offset | a time (default: the end at start)",
    )
    parser.add_argument("--sinks", type=_names, help="NAME,... (default: every sink of it)")
    parser.add_argument(
        "--consent",
        required=True,
        choices=("now", "event-time"),
        help="now: the current consent, judged now; event-time: consent as known then",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--into", metavar="SUFFIX", help="versioned topics T.SUFFIX (default replay-<UTC time>)"
    )
    target.add_argument(
        "--live", action="store_true", help="into the live sinks, idempotently, with retractions"
    )
    parser.add_argument("--dry-run", action="store_true", help="write nothing; report the diff")
    parser.add_argument("--id", dest="replay_id", help="resumable id (default: from the args)")
    parser.add_argument("--policy", type=Path, help="policy file (default: the router's)")
    parser.add_argument("--config", type=Path, help="the router's settings file (topics)")
    parser.add_argument("--json", action="store_true", help="the summary as JSON on stdout")
    parser.add_argument("--rate", type=float, help="at most this many records/s")
    parser.add_argument(
        "--commit-interval", type=float, default=0.5, help="seconds per transaction (0.5)"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    # the engine pulls in the router core and librdkafka clients: only when it runs
    from consentgate.ops.replay import Replay, ReplayRequest, as_json  # noqa: PLC0415

    try:
        config = RouterConfig.build(args.config, {"policy": args.policy})
        request = ReplayRequest(
            source=args.source,
            start=args.start,
            end=args.end,
            sinks=args.sinks,
            consent=args.consent,
            into=args.into,
            live=args.live,
            dry_run=args.dry_run,
            replay_id=args.replay_id,
            rate=args.rate,
            commit_interval=args.commit_interval,
        )
        report = Replay(request, config, stream=sys.stderr).run()
    except ConfigError as exc:
        print(f"consentgate replay: error: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGS
    except (KafkaException, ConsentgateError) as exc:
        print(f"consentgate replay: failed (exit {EXIT_KAFKA}): {exc}", file=sys.stderr)
        return EXIT_KAFKA
    print(as_json(report) if args.json else report.render())
    return 0
