"""The consent fold as a faust-streaming worker: one agent over consent-changes.

faust gives the group membership (one owner per changes partition), at-least-once offsets
(committed only for records the agent has acknowledged) and the stream; the agent hands
each batch (``take_events``) to :class:`~consentgate.consent.fold_writer.FoldWriter` on one
worker thread, which folds it and commits the state records in a transaction. The batch is
acknowledged only after that commit. Any failure ends the process at once with exit 70
(``os._exit``): faust's ``take_events`` acknowledges a batch in a ``finally`` even when the
body raises, so a raised error would commit offsets past changes not in consent-state.
After the restart the batch is folded again from the committed offset.

Revoked partitions are released on the same worker thread (so never under a running
batch); a batch event from a partition this consumer no longer holds is skipped: its next
owner folds it from the committed offset.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import faust
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from consentgate.consent.fold import RawChange
from consentgate.consent.fold_config import FoldConfig
from consentgate.consent.fold_writer import FoldWriter

__all__ = ["EXIT_FOLD_FAILED", "FoldConfig", "FoldShell", "build_app"]

log = logging.getLogger(__name__)

EXIT_FOLD_FAILED = 70


class FoldShell:
    """What the agent calls: batches to the writer on one thread, metrics, readiness."""

    def __init__(self, writer: FoldWriter) -> None:
        self.writer = writer
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="fold")
        self.registry = CollectorRegistry()
        self.folded = Counter("consentgate_fold_changes", "changes applied", registry=self.registry)
        self.duplicates = Counter(
            "consentgate_fold_duplicates", "changes already applied", registry=self.registry
        )
        self.rejected = Counter(
            "consentgate_fold_rejected", "records dead-lettered", registry=self.registry
        )
        self.skipped = Counter(
            "consentgate_fold_skipped",
            "records of partitions no longer held",
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "consentgate_fold_batch_seconds", "fold + commit time per batch", registry=self.registry
        )
        self.held = Gauge(
            "consentgate_fold_partitions", "consent partitions held", registry=self.registry
        )
        self.ready = threading.Event()

    def handle(self, batch: Sequence[tuple[int, RawChange]], held: set[int]) -> None:
        started = time.monotonic()
        by_partition: dict[int, list[RawChange]] = {}
        for partition, raw in batch:
            if partition in held:
                by_partition.setdefault(partition, []).append(raw)
            else:
                self.skipped.inc()
        now = datetime.now(UTC)
        results = {
            partition: self.writer.ensure(partition).fold(records, now)
            for partition, records in by_partition.items()
        }
        self.writer.write(results)  # committed (or FoldFailed) before the batch is acked
        for result in results.values():
            self.folded.inc(result.applied)
            self.duplicates.inc(result.duplicates)
            self.rejected.inc(len(result.rejected))
        self.held.set(len(self.writer.folds))
        self.batch_seconds.observe(time.monotonic() - started)

    def release(self, partitions: set[int]) -> None:
        self.writer.drop(partitions)
        self.held.set(len(self.writer.folds))


def build_app(config: FoldConfig, shell: FoldShell) -> faust.App:
    app = faust.App(
        config.group,
        broker=[f"kafka://{server}" for server in config.bootstrap.split(",")],
        broker_credentials=config.credentials,
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=config.instance_id,
        broker_session_timeout=config.session_timeout,
        broker_heartbeat_interval=max(1.0, config.session_timeout / 4),
        broker_commit_interval=config.commit_interval,
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
    )
    changes = app.topic(config.topics.changes, key_serializer="raw", value_serializer="raw")
    topic_name = config.topics.changes

    def held() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic_name}

    @app.agent(changes, concurrency=1)
    async def fold(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(config.batch, within=config.within):
            batch = [
                (
                    e.message.partition,
                    RawChange(
                        e.message.offset,
                        e.message.key,
                        e.message.value,
                        int(e.message.timestamp * 1000) if e.message.timestamp else None,
                    ),
                )
                for e in events
            ]
            try:
                await loop.run_in_executor(shell.executor, shell.handle, batch, held())
            except BaseException:
                log.exception("consent fold failed; stopping without acknowledging the batch")
                logging.shutdown()
                os._exit(EXIT_FOLD_FAILED)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust's signal typing
    async def on_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        shell.ready.clear()
        parts = {tp.partition for tp in revoked if tp.topic == topic_name}
        await asyncio.get_running_loop().run_in_executor(shell.executor, shell.release, parts)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        shell.ready.set()
        log.info("consent fold holds changes partitions %s", sorted(held()))

    return app


def serve_health(shell: FoldShell, host: str, port: int) -> ThreadingHTTPServer:
    """``/healthz`` (the process runs), ``/readyz`` (in the group), ``/metrics``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            if self.path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif self.path == "/readyz":
                ok = shell.ready.is_set()
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain")
            elif self.path == "/metrics":
                self._send(200, generate_latest(shell.registry), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="fold-web", daemon=True).start()
    log.info(
        "consent fold serving /healthz /readyz /metrics on %s:%d", host, server.server_address[1]
    )
    return server
