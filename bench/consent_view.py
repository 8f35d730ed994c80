"""The router's consent view on the real broker: load time, memory, live-change delay, gate wait.

Runs the integration tests' probe worker (tests/integration/apps/consent_probe.py: the real
app factory, consent view and gate) as a subprocess against fresh topics and measures

1. startup: time from process start to "consent view ready" for N consent records of ~300 B,
   and the worker's RSS after loading;
2. live changes: delay from "produce called" to "applied to the view" for consent changes
   written while the worker runs, with recovery_buffer_size=1 and with the default (1000);
3. the gate: how long events waited in ``admit`` when produced at a steady rate.

Usage: .venv/bin/python bench/consent_view.py [--records 100000 1000000] [--changes 200]
Needs CONSENTGATE_BOOTSTRAP (or the local broker). Writes bench/results/consent_view.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.probe import ProbeWorker, probe_env  # noqa: E402

from consentgate.cluster import resolve_bootstrap  # noqa: E402
from consentgate.settings import Settings  # noqa: E402

P = 6


def make_topics(admin: AdminClient) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    events, consent = f"bench-events-{tag}", f"bench-consent-{tag}"
    futures = admin.create_topics(
        [NewTopic(events, P, 1), NewTopic(consent, P, 1, config={"cleanup.policy": "compact"})]
    )
    for future in futures.values():
        future.result(30)
    return events, consent


def value(i: int, version: str = "v1") -> bytes:
    head = f"subject-{i}|{version}|".encode()
    return head + b"x" * (300 - len(head))


def preload(bootstrap: str, topic: str, n: int) -> float:
    producer = Producer(Settings().producer_config(bootstrap, **{"linger.ms": 20}))
    started = time.monotonic()
    for i in range(n):
        while True:
            try:
                producer.produce(topic, key=f"subject-{i}".encode(), value=value(i))
                break
            except BufferError:
                producer.poll(0.05)
        if i % 5000 == 0:
            producer.poll(0)
    producer.flush(120)
    return time.monotonic() - started


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(bootstrap: str, events: str, consent: str, workdir: Path, **extra: str) -> ProbeWorker:
    workdir.mkdir(parents=True)
    env = probe_env(
        bootstrap,
        events=events,
        consent=consent,
        partitions=P,
        app_id=f"bench-{uuid.uuid4().hex[:8]}",
        PROBE_DATADIR=str(workdir / "data"),
        PROBE_LOGLEVEL="warning",
        **extra,
    )
    return ProbeWorker(workdir, env).start()


def live_delays(bootstrap: str, consent: str, worker: ProbeWorker, changes: int) -> list[float]:
    """Delay produce -> applied for ``changes`` changes, one at a time (None if never)."""
    producer = Producer(Settings().producer_config(bootstrap, **{"linger.ms": 0}))
    producer.produce(consent, key=b"warm-up", value=b"x")  # connection, metadata, producer id
    producer.flush(10)
    delays: list[float] = []
    acks: list[tuple[int, int]] = []

    def on_ack(err: object, msg: Any) -> None:
        acks.append((msg.partition(), msg.offset()))

    for i in range(changes):
        acks.clear()
        sent = time.time()
        producer.produce(
            consent, key=f"subject-{i}".encode(), value=value(i, "v2"), on_delivery=on_ack
        )
        producer.flush(10)
        partition, offset = acks[0]
        deadline = time.monotonic() + 3.0
        applied = None
        while time.monotonic() < deadline and applied is None:
            applied = next(
                (
                    a["t"]
                    for a in worker.records("applied")
                    if a["partition"] == partition and a["next_offset"] > offset
                ),
                None,
            )
            time.sleep(0.002)
        delays.append(applied - sent if applied is not None else float("inf"))
        time.sleep(0.05)
    return delays


def gate_waits(
    bootstrap: str, events: str, worker: ProbeWorker, n: int, rate: float
) -> list[float]:
    producer = Producer(Settings().producer_config(bootstrap, **{"linger.ms": 0}))
    before = len(worker.records("event"))
    for i in range(n):
        producer.produce(events, key=f"subject-{i}".encode(), value=b"e")
        producer.poll(0)
        time.sleep(1.0 / rate)
    producer.flush(10)
    worker.wait_for(lambda w: len(w.records("event")) >= before + n, timeout=60, what="events")
    got = worker.records("event")[before:]
    assert all(e["verdict"] == "ready" for e in got), "stale verdicts in a healthy run"
    return [e["waited"] for e in got]


def _slowest(delays: list[float]) -> str:
    top = sorted(range(len(delays)), key=lambda i: -delays[i])[:3]
    return ", ".join(f"#{i} {delays[i] * 1000:.0f} ms" for i in top)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load(bootstrap: str, admin: AdminClient, n: int, workdir: Path) -> list[str]:
    """Rows for loading ``n`` records into a fresh worker (topics deleted afterwards)."""
    events, consent = make_topics(admin)
    worker = None
    try:
        produce_s = preload(bootstrap, consent, n)
        started = time.time()
        worker = start(bootstrap, events, consent, workdir)
        ready = worker.wait_recovered(timeout=1200)
        load_s = ready["t"] - started
        rss = rss_mib(worker.proc.pid) if worker.proc else float("nan")
    finally:
        if worker is not None:
            worker.stop()
        admin.delete_topics([events, consent])
    return [
        f"| {n:,} consent records x ~300 B: worker start -> view ready | {load_s:.1f} s "
        f"({n / load_s:,.0f} records/s incl. ~1.5 s process start; produced in "
        f"{produce_s:.1f} s) |",
        f"| {n:,} consent records: worker RSS after load | {rss:.0f} MiB |",
    ]


def live(bootstrap: str, admin: AdminClient, changes: int, workdir: Path) -> list[str]:
    """Rows for live changes (buffer 1 vs default) and the gate's wait."""
    events, consent = make_topics(admin)
    workers: list[ProbeWorker] = []
    lines = []
    try:
        preload(bootstrap, consent, max(changes, 1000))
        worker = start(bootstrap, events, consent, workdir / "live", PROBE_GATE="1")
        workers.append(worker)
        worker.wait_recovered(timeout=600)
        delays = live_delays(bootstrap, consent, worker, changes)
        lines.append(
            f"| live change -> applied, recovery_buffer_size=1 | p50 "
            f"{statistics.median(delays) * 1000:.1f} ms, p99 {pct(delays, 0.99) * 1000:.1f} ms, "
            f"max {max(delays) * 1000:.1f} ms ({len(delays)} changes; slowest: "
            f"{_slowest(delays)}) |"
        )
        waits = gate_waits(bootstrap, events, worker, 500, rate=200.0)
        lines.append(
            f"| gate wait per event (200 events/s) | p50 {statistics.median(waits) * 1000:.1f} ms,"
            f" p99 {pct(waits, 0.99) * 1000:.1f} ms, max {max(waits) * 1000:.1f} ms |"
        )
        worker.stop()
        trap = start(bootstrap, events, consent, workdir / "trap", PROBE_BUFFER="1000")
        workers.append(trap)
        trap.wait_recovered(timeout=600)
        never = live_delays(bootstrap, consent, trap, 5)
        shown = ", ".join(
            "never (3 s)" if d == float("inf") else f"{d * 1000:.0f} ms" for d in never
        )
        lines.append(f"| live change -> applied, default recovery_buffer_size | {shown} |")
    finally:
        for w in workers:
            w.stop()
        admin.delete_topics([events, consent])
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, nargs="+", default=[100_000])
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    settings = Settings()
    bootstrap = settings.bootstrap or resolve_bootstrap(settings)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tmp = Path(tempfile.mkdtemp(prefix="bench-consent-view-"))
    lines: list[str] = []
    for n in args.records:
        lines += load(bootstrap, admin, n, tmp / f"load-{n}")
    lines += live(bootstrap, admin, args.changes, tmp)
    header = [
        "# consent view (bench/consent_view.py)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"broker {bootstrap} on the same machine; memory:// store, {P} partitions, 1 worker.",
        "",
        "| what | result |",
        "|---|---|",
    ]
    text = "\n".join(header + lines) + "\n"
    out = REPO / "bench" / "results" / "consent_view.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
