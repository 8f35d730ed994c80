"""A router-shaped faust worker for the integration tests, run as a subprocess.

It is built by the real app factory and consent view; its one agent reads raw events
(key = subject id), optionally passes them through the time-correct gate, looks the subject up
in the consent view and appends what it saw to a JSON-lines file. It also logs every consent
record applied after the first recovery ("applied") and each finished recovery ("recovered").

Configured by environment variables (PROBE_*, see ``main``); never imported by the tests.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faust

from consentgate.router.app import AGENT_CONCURRENCY, RouterAppConfig, create_router


class JsonLog:
    def __init__(self, path: str) -> None:
        self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def write(self, **record: Any) -> None:
        record.setdefault("t", time.time())
        self._file.write(json.dumps(record) + "\n")


class ProgressLog:
    """ViewListener that writes recoveries and live applied records to the log."""

    def __init__(self, out: JsonLog) -> None:
        self.out = out
        self.recovered = False

    def on_applied(self, partition: int, next_offset: int) -> None:
        if self.recovered:
            self.out.write(kind="applied", partition=partition, next_offset=next_offset)

    def on_revoked(self, partitions: set[int]) -> None:
        self.out.write(kind="revoked", partitions=sorted(partitions))

    def on_recovered(self, positions: Mapping[int, int]) -> None:
        self.recovered = True
        self.out.write(kind="recovered", positions={str(p): n for p, n in positions.items()})


def build(env: Mapping[str, str]) -> faust.App:
    partitions = int(env.get("PROBE_PARTITIONS", "6"))
    consent_topic = env["PROBE_CONSENT"]
    config = RouterAppConfig(
        bootstrap=env["PROBE_BOOTSTRAP"],
        app_id=env["PROBE_APP_ID"],
        consent_topic=consent_topic,
        partitions=partitions,
        recovery_buffer_size=int(env.get("PROBE_BUFFER", "1")),
        instance_id=env.get("PROBE_INSTANCE") or None,
        web_port=int(env.get("PROBE_WEB_PORT", "6066")),
        session_timeout=float(env.get("PROBE_SESSION_TIMEOUT", "30")),
        consent_wait=float(env.get("PROBE_GATE_WAIT", "2.0")),
        datadir=Path(env["PROBE_DATADIR"]) if "PROBE_DATADIR" in env else None,
    )
    router = create_router(config)
    app, view = router.app, router.consent
    out = JsonLog(env["PROBE_OUT"])
    view.add_listener(ProgressLog(out))
    gate = router.gate if env.get("PROBE_GATE") == "1" else None

    events = app.topic(
        env["PROBE_EVENTS"],
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )

    @app.agent(events, concurrency=AGENT_CONCURRENCY)
    async def probe(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            verdict = None
            started = time.monotonic()
            if gate is not None:
                verdict = (await gate.admit(message.partition, message.timestamp)).value
            waited = time.monotonic() - started
            seen = view.lookup(event.key)
            out.write(
                kind="event",
                key=event.key.decode(),
                value=event.value.decode() if event.value is not None else None,
                partition=message.partition,
                offset=message.offset,
                event_time=message.timestamp,
                state=seen.state,
                seen=seen.raw.decode() if seen.raw is not None else None,
                consent_partition=view.table.data._key_partition.get(event.key),
                verdict=verdict,
                waited=waited,
            )

    return app


def main() -> None:
    app = build(os.environ)
    worker = faust.Worker(app, loglevel=os.environ.get("PROBE_LOGLEVEL", "info"))
    worker.execute_from_commandline()


if __name__ == "__main__":
    sys.exit(main())
