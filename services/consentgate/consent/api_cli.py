"""``consentgate consent serve``: the consent service's HTTP API (uvicorn) and its fold.

By default serve also runs the consent fold (``consentgate consent fold``) as a supervised
child process (consent/fold_child.py: restarted when it dies, serve stops when it refuses
to start). ``--no-fold`` runs the API only: for several API replicas beside a fold deployed
on its own (folds may run side by side too: each partition has one fenced writer).

Tokens come from the environment: ``CONSENTGATE_API_TOKEN`` (required) and
``CONSENTGATE_API_OPERATOR_TOKEN`` (optional: the backdating path of withdrawals); the
cluster from ``CONSENTGATE_BOOTSTRAP``. With ``CONSENTGATE_CONSOLE_*`` set it also serves the
web console (docs/console.md, :mod:`consentgate.console`). SIGTERM or SIGINT stops it
gracefully: requests in flight are answered, then the changelog is flushed and closed.

Exit codes: 0 stopped; 3 the server could not start (uvicorn's startup failure, e.g. the port
is taken); 78 refused to start (no token, an unusable token, no cluster, an invalid policy).
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import SecretStr

from consentgate.consent.changelog import ChangeLog
from consentgate.consent.fold_child import FoldChild, fold_command
from consentgate.consent.service import ConsentService
from consentgate.consent.state_reader import StateReader
from consentgate.errors import ConsentgateError
from consentgate.policy.load import load_policy
from consentgate.router.config import DEFAULT_POLICY
from consentgate.serde import Serde, SerdeSettings
from consentgate.settings import Settings

__all__ = ["EXIT_CONFIG", "ApiSettings", "register"]

log = logging.getLogger(__name__)

EXIT_CONFIG = 78
CHANGES = "consent.changes.v1"
STATE = "consent.state.v1"
DLQ = "consentgate.dlq.v1"
GRACEFUL_SECONDS = 40
"""How long a stop waits for requests in flight (an append waits up to 35 s for its ack)."""


class ApiSettings(Settings):
    """The settings plus the API's tokens (``CONSENTGATE_API_TOKEN``, ``..._OPERATOR_TOKEN``)."""

    api_token: SecretStr | None = None
    api_operator_token: SecretStr | None = None


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the consent HTTP API (tokens: CONSENTGATE_API_TOKEN, "
        "CONSENTGATE_API_OPERATOR_TOKEN)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8070)
    serve.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy file")
    serve.add_argument("--changes-topic", default=CHANGES)
    serve.add_argument("--state-topic", default=STATE)
    serve.add_argument("--dlq-topic", default=DLQ, help="the fold's dead letters")
    serve.add_argument(
        "--no-fold", dest="fold", action="store_false", help="the API only (no fold child)"
    )
    serve.add_argument("--fold-group", default="consentgate-fold", help="the fold's group id")
    serve.add_argument(
        "--fold-web-port", type=int, default=8071, help="the fold's /healthz /readyz /metrics"
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415 - the web stack only for serve

    from consentgate.consent.api import create_app  # noqa: PLC0415
    from consentgate.console.wiring import console_mount  # noqa: PLC0415

    settings = ApiSettings()
    token = settings.api_token.get_secret_value() if settings.api_token else ""
    operator = settings.api_operator_token
    if not token:
        log.error("consent API refused to start: set CONSENTGATE_API_TOKEN (the bearer token)")
        return EXIT_CONFIG
    if not settings.bootstrap:
        log.error("consent API refused to start: set CONSENTGATE_BOOTSTRAP (host:port[,...])")
        return EXIT_CONFIG
    try:
        policy = load_policy(args.policy)
        serde = Serde.from_settings(SerdeSettings())
        kafka = settings.kafka_config(None, logger=logging.getLogger("librdkafka"))
        console = console_mount(args, kafka, policy, serde)
    except (ConsentgateError, ValueError) as exc:  # a message never contains a secret
        log.error("consent API refused to start: %s", exc)
        return EXIT_CONFIG
    changelog = ChangeLog(kafka, args.changes_topic, serde)
    try:
        app = create_app(
            ConsentService(policy, changelog),
            lambda: StateReader(kafka, args.state_topic, serde),
            token=token,
            operator_token=operator.get_secret_value() if operator else None,
            console=console,
        )
    except ValueError as exc:  # an unusable token (the message never contains it)
        changelog.close(5)
        log.error("consent API refused to start: %s", exc)
        return EXIT_CONFIG
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,  # through the process's logging (consentgate.cli)
        access_log=False,  # paths carry subject ids
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
    server = uvicorn.Server(config)
    log.info(
        "consent API on http://%s:%d: %s -> %s (operator token %s)",
        args.host,
        args.port,
        args.changes_topic,
        args.state_topic,
        "set" if operator else "not set",
    )
    # uvicorn stops gracefully on SIGTERM/SIGINT and then re-raises the signal with the
    # handler it found: make that one harmless for SIGTERM so the changelog is closed below.
    previous = signal.signal(signal.SIGTERM, _stopped)
    fold = _start_fold(args, server) if args.fold else None
    try:
        server.run()
    except SystemExit as exc:  # uvicorn's startup failure (e.g. the port is taken): exit 3
        code = exc.code if isinstance(exc.code, int) else 3
        log.error("consent API could not start (exit %d)", code)
        return code
    finally:
        signal.signal(signal.SIGTERM, previous)
        if fold is not None:
            fold.stop()
        changelog.close()
        log.info("consent API stopped")
    return EXIT_CONFIG if fold is not None and fold.refused else 0


def _start_fold(args: argparse.Namespace, server: Any) -> FoldChild:
    command = fold_command(
        policy=str(args.policy),
        changes_topic=args.changes_topic,
        state_topic=args.state_topic,
        dlq_topic=args.dlq_topic,
        group=args.fold_group,
        web_port=args.fold_web_port,
    )

    def refused() -> None:
        server.should_exit = True  # uvicorn's own stop flag: serve exits 78 below

    fold = FoldChild(command, on_refused=refused)
    fold.start()
    return fold


def _stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM after uvicorn's graceful stop: nothing more to do (the caller returns 0)."""
