"""Run ``apps/consent_probe.py`` workers as subprocesses and read what they logged."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

APP = Path(__file__).parent / "apps" / "consent_probe.py"

Record = dict[str, Any]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ProbeWorker:
    """One probe worker process; its JSON-lines output and its log live in ``workdir``."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.out = workdir / "out.jsonl"
        self.log = workdir / "worker.log"
        self.web_port = int(env["PROBE_WEB_PORT"])
        self.env = {**os.environ, **env, "PROBE_OUT": str(self.out)}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProbeWorker:
        self.out.touch()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(APP)], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def records(self, kind: str | None = None) -> list[Record]:
        lines = self.out.read_text(encoding="utf-8").splitlines()
        out = [json.loads(line) for line in lines if line.endswith("}")]
        return [r for r in out if kind is None or r["kind"] == kind]

    def wait_for(
        self, done: Callable[[ProbeWorker], bool], *, timeout: float = 60.0, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done(self):
                return
            if not self.alive():
                pytest.fail(f"probe worker died waiting for {what}:\n{self.tail()}")
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}:\n{self.tail()}")

    def wait_recovered(self, count: int = 1, timeout: float = 60.0) -> Record:
        self.wait_for(
            lambda w: len(w.records("recovered")) >= count, timeout=timeout, what="recovery"
        )
        return self.records("recovered")[count - 1]

    def wait_events(self, count: int, timeout: float = 60.0) -> list[Record]:
        self.wait_for(
            lambda w: len(w.records("event")) >= count, timeout=timeout, what=f"{count} events"
        )
        return self.records("event")

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


ProbeFactory = Callable[..., ProbeWorker]


def probe_env(
    bootstrap: str, *, events: str, consent: str, partitions: int, app_id: str, **extra: str
) -> dict[str, str]:
    return {
        "PROBE_BOOTSTRAP": bootstrap,
        "PROBE_APP_ID": app_id,
        "PROBE_EVENTS": events,
        "PROBE_CONSENT": consent,
        "PROBE_PARTITIONS": str(partitions),
        "PROBE_WEB_PORT": str(free_port()),
        **extra,
    }


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    latest = OffsetSpec.latest()
    futures = admin.list_offsets({TopicPartition(topic, p): latest for p in range(partitions)})
    return {tp.partition: f.result().offset for tp, f in futures.items()}
