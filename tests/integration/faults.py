"""Shared by the fault suite: its scale (short in ``make test``, full in ``make test-faults``),
the independent audit over a RouterEnv's topics, and one JSON report per run.

``CONSENTGATE_FAULTS=full`` selects the full sizes; ``CONSENTGATE_FAULT_REPORTS`` is where the
reports go (default ``.state/fault-reports``): one ``<test>.json`` per test, overwritten by
the next run, with the seed, the sizes, the faults injected and what the checks counted.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import Producer

from consentgate.models.consent import ConsentChange
from consentgate.ops.audit import AuditOptions, AuditReport, AuditTopics, run_audit
from consentgate.policy import load_policy
from consentgate.router.partitioner import partition_for
from consentgate.settings import Settings
from tests.integration.consent_harness import new_change
from tests.integration.router_harness import RouterEnv
from tests.kafka_helpers import job_view

__all__ = [
    "FULL",
    "Stream",
    "audit",
    "grant",
    "scale",
    "subjects_per_partition",
    "write_report",
]

T = TypeVar("T")

FULL = os.environ.get("CONSENTGATE_FAULTS", "").lower() == "full"


def scale(short: T, full: T) -> T:
    """``full`` under ``make test-faults``, else ``short``."""
    return full if FULL else short


# The per-test ceiling of every fault test (pytest's 300 s default is the other tests'):
# the kill -9 test needed 157 s at short size on a moderately loaded machine and failed on
# that default beside two other test runs; each test also has its own deadlines inside.
TIMEOUT = pytest.mark.timeout(scale(1200, 3600))


def audit(
    env: RouterEnv,
    *,
    provisions: str | None = None,
    past: tuple[Path, ...] = (),
    workers: int = 1,
) -> AuditReport:
    """The independent audit (``consentgate audit``'s engine) over the env's topics."""
    report = run_audit(
        Settings().kafka_config(env.bootstrap),
        load_policy(env.policy_path),
        env.serde,
        AuditTopics(
            changes=env.changes,
            decisions=env.decisions,
            dead_letters=env.dlq,
            provisions=provisions or env.provisions,
        ),
        keys=env.keys,
        options=AuditOptions(
            settle=timedelta(0),
            past_policies=tuple(load_policy(p) for p in past),
            workers=workers,
        ),
    )
    print(report.render())
    return report


def write_report(name: str, **fields: Any) -> Path:
    """``<reports>/<name>.json`` with ``fields``, the scale and the time."""
    folder = Path(os.environ.get("CONSENTGATE_FAULT_REPORTS", ".state/fault-reports"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    body = {
        "test": name,
        "scale": "full" if FULL else "short",
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        **fields,
    }
    path.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def subjects_per_partition(tag: str, partitions: int, each: int) -> list[list[str]]:
    """``each`` subject ids for every partition (murmur2, as the router partitions)."""
    out: list[list[str]] = [[] for _ in range(partitions)]
    n = 0
    while any(len(s) < each for s in out):
        subject = f"{tag}{n}"
        part = out[partition_for(subject.encode(), partitions)]
        if len(part) < each:
            part.append(subject)
        n += 1
    return out


def grant(subject: str, purpose: str, recipient: str | None = None) -> ConsentChange:
    return new_change(subject, "GRANT", purpose, recipient)


class Stream(threading.Thread):
    """Browsing events for ``subjects``, round-robin, event time = now, until stopped;
    ``sent``: the acknowledged ones, event id -> (subject, event time)."""

    def __init__(self, env: RouterEnv, subjects: list[str], every: float = 0.004) -> None:
        super().__init__(daemon=True)
        self.env, self.subjects, self.every = env, subjects, every
        self.sent: dict[str, tuple[str, datetime]] = {}  # event id -> (subject, event time)
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.producer = Producer(Settings().producer_config(env.bootstrap))

    def run(self) -> None:
        while not self.halt.is_set():
            batch = []
            for subject in self.subjects:
                batch.append((subject, job_view(subject)))
            for subject, datum in batch:
                value = self.env.serde.encode(datum, "BrowsingEvent")
                self.producer.produce(
                    self.env.plan.browsing_topic,
                    value,
                    subject.encode(),
                    on_delivery=self._acked(subject, datum),
                )
            self.producer.poll(0)
            time.sleep(self.every)

    def _acked(self, subject: str, datum: dict[str, Any]) -> Any:
        """Only what the broker acknowledged counts as sent (a broker may be down)."""

        def on(err: object, _msg: object) -> None:
            if err is None:
                event_id = str(datum["event_id"])
                with self.lock:
                    self.sent[event_id] = (subject, datum["event_time"])
                    self.env.produced.append(event_id)

        return on

    def stop(self, timeout: float = 120.0) -> dict[str, tuple[str, datetime]]:
        self.halt.set()
        self.join(60)
        left = self.producer.flush(timeout)
        assert left == 0, f"{left} events never acknowledged"
        with self.lock:
            return dict(self.sent)
