"""The one command line, ``consentgate``, fronting every part of the system.

Each area registers its own sub-commands from a small ``cli`` module exposing
``register(subparsers)``; a registered handler takes the parsed namespace and returns the
process exit code. The product's areas are listed here explicitly and each one must import: a
missing area is an ImportError (and a failing test), never a command that silently disappears.

Other installed distributions add commands through the ``consentgate.commands`` entry point
group (a ``register`` function each): the development stack adds ``broker``, ``registry``
and ``demo`` that way, so a product install has none of them. A plugin that fails to load is
an error too, named with its distribution.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from consentgate.errors import ConsentgateError

__all__ = ["main"]

# Areas, in the order their commands are listed in --help.
_AREAS = (
    "consentgate.serde.cli",
    "consentgate.policy.cli",
    "consentgate.ops.topics_cli",
    "consentgate.ops.acls_cli",
    "consentgate.router.cli",
    "consentgate.consent.cli",
    "consentgate.ops.audit_cli",
    "consentgate.ops.replay_cli",
    "consentgate.ops.retract_cli",
    "consentgate.ops.report_cli",
    "consentgate.ops.consume_cli",
)
PLUGINS = "consentgate.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consentgate",
        description="Consent enforcement in the Kafka data path.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _AREAS:
        importlib.import_module(name).register(sub)
    for plugin in sorted(entry_points(group=PLUGINS), key=lambda ep: ep.name):
        try:
            register = plugin.load()
        except ImportError as exc:
            dist = plugin.dist.name if plugin.dist else "?"
            raise ImportError(f"command {plugin.name!r} of {dist} cannot load: {exc}") from exc
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.handler(args)
    except ConsentgateError as exc:
        print(f"consentgate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
