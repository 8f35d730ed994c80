"""``consentgate router``: run a router worker (SIGTERM / Ctrl-C to stop).

Every setting of :class:`~consentgate.router.config.RouterConfig` is an option, named after
its dotted path (``--gate.consent-wait``), with its environment variable in the help.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from consentgate.errors import ConfigError
from consentgate.router.config import RouterConfig, fields

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "router",
        help="run the consent router (transactional confluent-kafka worker)",
        description="Run a router worker. Exit codes: 0 stopped, 70 fail-stop (nothing "
        "committed past the failure), 78 refused to start (settings, policy, topics).",
    )
    parser.add_argument("--config", type=Path, help="YAML file with the settings below")
    parser.add_argument("--loglevel", default="info", help="debug, info, warning, error")
    for dotted, info in fields():
        env = "CONSENTGATE_ROUTER_" + dotted.upper().replace(".", "__")
        option = "--" + dotted.replace("_", "-")
        kind = _kind(info.annotation)
        default = info.default
        text = f"{info.description or ''} (env {env}; default {default})"
        if kind is bool:
            parser.add_argument(
                option, dest=dotted, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            parser.add_argument(option, dest=dotted, type=kind, default=None, help=text)
    # the names of the first router, kept working
    aliases = {
        "--web-port": "web.port",
        "--consent-wait": "gate.consent_wait",
        "--gate-skew": "gate.skew",
        "--consent-topic": "topics.consent_state",
        "--changes-topic": "topics.consent_changes",
        "--decisions-topic": "topics.decisions",
        "--provisions-topic": "topics.provisions",
        "--dlq-topic": "topics.dead_letters",
    }
    for option, dotted in aliases.items():
        parser.add_argument(option, dest=dotted, type=str, default=None, help=f"= --{dotted}")
    parser.set_defaults(handler=_run)


def _kind(annotation: Any) -> Any:
    for kind in (bool, int, float, Path):
        if annotation is kind or kind in getattr(annotation, "__args__", ()):
            return kind
    return str


def _run(args: argparse.Namespace) -> int:
    from consentgate.router.run import EXIT_CONFIG, run  # noqa: PLC0415 - heavy imports

    logging.getLogger().setLevel(args.loglevel.upper())
    overrides = {dotted: getattr(args, dotted) for dotted, _ in fields() if hasattr(args, dotted)}
    try:
        config = RouterConfig.build(args.config, overrides)
    except ConfigError as exc:
        logging.getLogger(__name__).error("router refused to start: %s", exc)
        return EXIT_CONFIG
    return run(config)
