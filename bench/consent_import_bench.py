"""Consent import benchmark: a big CSV through ``consentgate consent import``, then the fold.

    .venv/bin/python bench/consent_import_bench.py [--rows 1000000] [--partitions 6]
        [--bootstrap HOST:PORT] [--max-in-flight N] [--profile] [--keep] [--note TEXT]
        [--no-write]

Cluster: ``--bootstrap``, else ``CONSENTGATE_BOOTSTRAP``, else the local broker (started
for the run if it is not running, as ``consentgate broker start`` does, and stopped again).

1. generate a CSV of ``--rows`` rows: rows/4 subjects x 4 changes, no effective_time, each
   round over the subjects in a shuffled order: GRANT analytics, GRANT partner_sharing for
   one of the policy's recipients, GRANT profiling, WITHDRAW analytics (75% grants);
2. import: one ``consentgate consent import FILE`` subprocess into a fresh consent.changes
   topic (``--partitions``); seconds from process start to exit (start-up and the file's
   sha256 pass included) and the command's own elapsed; checked: exit 0 and the topic's
   end offsets sum to the rows;
3. fold: one ``consentgate consent fold`` subprocess, fresh group and fresh state/DLQ
   topics; its /metrics polled every 0.25 s until consentgate_fold_changes_total +
   consentgate_fold_duplicates_total reaches the rows; seconds from /readyz 200 to that
   point (and from process start). Checked: no record rejected.

Prints a table and writes bench/results/consent-import-<UTC timestamp>.md (not with
``--no-write``). ``--profile``
runs the import under cProfile (slower; the top functions go in the results). Topics and
the fold's group are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import pstats
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import confluent_kafka
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # implicit re-export
    AdminClient,
    NewTopic,
)

from consentgate.policy.load import load_policy
from consentgate_dev.cluster import open_cluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consentgate_dev.jvm import free_port
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
POLICY = REPO / "deploy" / "policy.yaml"
STALL_S = 120.0  # the fold made no progress for this long: give up


def say(text: str) -> None:
    print(text, flush=True)


# -- the file ---------------------------------------------------------------------------------


def generate(path: Path, rows: int, recipients: list[str], seed: int = 7) -> int:
    """rows/4 subjects x 4 changes (see the module docstring); returns the row count."""
    rng = random.Random(seed)
    subjects = max(rows // 4, 1)
    names = [f"bench-{i:07d}" for i in range(subjects)]
    rounds = [
        lambda i: f"{names[i]},GRANT,analytics,\n",
        lambda i: f"{names[i]},GRANT,partner_sharing,{recipients[i % len(recipients)]}\n",
        lambda i: f"{names[i]},GRANT,profiling,\n",
        lambda i: f"{names[i]},WITHDRAW,analytics,\n",
    ]
    written = 0
    with path.open("w", encoding="utf-8") as f:
        f.write("subject_id,action,purpose,recipient\n")
        for make in rounds:
            order = list(range(subjects))
            rng.shuffle(order)
            chunk = []
            for i in order:
                if written == rows:
                    break
                chunk.append(make(i))
                written += 1
            f.write("".join(chunk))
    return written


# -- Kafka ------------------------------------------------------------------------------------


@dataclass
class Topics:
    changes: str
    state: str
    dlq: str

    def all(self) -> list[str]:
        return [self.changes, self.state, self.dlq]


def create_topics(admin: AdminClient, topics: Topics, partitions: int) -> None:
    compact = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
    new = [
        NewTopic(topics.changes, num_partitions=partitions, replication_factor=1),
        NewTopic(topics.state, num_partitions=partitions, replication_factor=1, config=compact),
        NewTopic(topics.dlq, num_partitions=1, replication_factor=1),
    ]
    for future in admin.create_topics(new, operation_timeout=30).values():
        future.result(timeout=30)


def end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}"})
    try:
        total = 0
        for p in range(partitions):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            total += high
        return total
    finally:
        consumer.close()


# -- the runs ---------------------------------------------------------------------------------


@dataclass
class ImportRun:
    seconds: float  # process start -> exit
    own_seconds: float  # the command's "elapsed" (after start-up and the sha256 pass)
    own_rate: float  # the command's changes/s
    cpu_seconds: float
    appended: int
    stdout: str
    profile: str = ""


def run_import(
    bootstrap: str, path: Path, topics: Topics, workdir: Path, args: argparse.Namespace
) -> ImportRun:
    prof = workdir / "import.prof"
    python = [sys.executable, *(("-m", "cProfile", "-o", str(prof)) if args.profile else ())]
    cmd = [
        *python,
        *("-m", "consentgate", "consent", "import", str(path), "--no-progress"),
        *("--policy", str(POLICY), "--changes-topic", topics.changes),
        *("--max-in-flight", str(args.max_in_flight)),
    ]
    env = {**os.environ, "CONSENTGATE_BOOTSTRAP": bootstrap}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"import exited {done.returncode}:\n{done.stdout}\n{done.stderr[-3000:]}")
    found = re.search(r"elapsed\s+([\d.]+) s\s+\(([\d,]+) changes/s\)", done.stdout)
    top = ""
    if args.profile:
        buf = io.StringIO()
        pstats.Stats(str(prof), stream=buf).sort_stats("tottime").print_stats(25)
        top = buf.getvalue()
    return ImportRun(
        seconds=seconds,
        own_seconds=float(found.group(1)) if found else float("nan"),
        own_rate=float(found.group(2).replace(",", "")) if found else float("nan"),
        cpu_seconds=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        appended=end_offsets(bootstrap, topics.changes, args.partitions),
        stdout=done.stdout,
        profile=top,
    )


@dataclass
class FoldRun:
    ready_seconds: float  # process start -> /readyz 200
    seconds: float  # ready -> every change folded
    total_seconds: float  # process start -> every change folded
    applied: float
    duplicates: float
    rejected: float


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=15) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("consentgate_fold_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name.split("{")[0]] = out.get(name.split("{")[0], 0.0) + float(value)
    return out


def run_fold(bootstrap: str, topics: Topics, group: str, rows: int, workdir: Path) -> FoldRun:
    port = free_port()
    cmd = [
        *(sys.executable, "-m", "consentgate", "consent", "fold", "--policy", str(POLICY)),
        *("--changes-topic", topics.changes, "--state-topic", topics.state),
        *("--dlq-topic", topics.dlq, "--group", group, "--web-port", str(port)),
    ]
    env = {**os.environ, "CONSENTGATE_BOOTSTRAP": bootstrap}
    log_path = workdir / "fold.log"
    with log_path.open("wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            ready = _wait_ready(proc, port, log_path) - started
            last, last_change = 0.0, time.monotonic()
            m: dict[str, float] = {}
            while True:
                # a busy fold can be slow to answer: a late answer is no progress, not an error
                with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                    m = metrics(port)
                folded = m.get("consentgate_fold_changes_total", 0.0) + m.get(
                    "consentgate_fold_duplicates_total", 0.0
                )
                now = time.monotonic()
                if folded >= rows:
                    break
                if folded > last:
                    last, last_change = folded, now
                elif now - last_change > STALL_S:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise SystemExit(f"fold stalled at {folded:.0f}/{rows}:\n{tail}")
                if proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise SystemExit(f"fold exited {proc.returncode}:\n{tail}")
                time.sleep(0.25)
            total = now - started
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
    return FoldRun(
        ready_seconds=ready,
        seconds=total - ready,
        total_seconds=total,
        applied=m.get("consentgate_fold_changes_total", 0.0),
        duplicates=m.get("consentgate_fold_duplicates_total", 0.0),
        rejected=m.get("consentgate_fold_rejected_total", 0.0),
    )


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path) -> float:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise SystemExit(f"fold exited {proc.returncode}:\n{tail}")
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r,
        ):
            if r.status == 200:
                return time.monotonic()
        time.sleep(0.1)
    raise SystemExit("fold not ready in 120 s")


# -- report -----------------------------------------------------------------------------------


def report(
    *,
    args: argparse.Namespace,
    stamp: datetime,
    rows: int,
    file_mib: float,
    imp: ImportRun,
    fold: FoldRun,
    load: tuple[tuple[float, ...], tuple[float, ...]],
    bootstrap: str,
) -> str:
    def rate(n: float, s: float) -> str:
        return f"{n / s:,.0f}" if s > 0 else "-"

    lines = [
        f"# Consent import benchmark, {stamp:%Y-%m-%d %H:%M:%S} UTC",
        "",
        f"- command: `{' '.join(sys.argv)}`",
        f"- machine: nproc {os.cpu_count()} (affinity {len(os.sched_getaffinity(0))}), "
        f"{cpu_model()}, {platform.platform()}",
        f"- python {platform.python_version()}, confluent-kafka {confluent_kafka.__version__}"
        f" (librdkafka {confluent_kafka.libversion()[0]})",
        f"- broker: {bootstrap} (shares the machine)",
        f"- file: {rows:,} rows ({rows // 4:,} subjects x 4: GRANT analytics, GRANT "
        f"partner_sharing <recipient>, GRANT profiling, WITHDRAW analytics; no effective_time),"
        f" {file_mib:.1f} MiB CSV; {args.partitions} partitions",
        f"- import: `consentgate consent import` (max in flight {args.max_in_flight:,})"
        + (" under cProfile" if args.profile else ""),
        "- fold: one `consentgate consent fold` process, fresh group, from offset 0",
        "- load average (1/5/15 min) before: "
        + " ".join(f"{x:.2f}" for x in load[0])
        + ", after: "
        + " ".join(f"{x:.2f}" for x in load[1]),
        *([f"- note: {args.note}"] if args.note else []),
        "",
        "| phase | rows | seconds | rows/s | detail |",
        "|---|---|---|---|---|",
        f"| import (process start → exit) | {rows:,} | {imp.seconds:.1f} | "
        f"{rate(rows, imp.seconds)} | {imp.appended:,} records appended; "
        f"CPU {imp.cpu_seconds:.1f} s ({imp.cpu_seconds / rows * 1e6:.0f} µs/row) |",
        f"| import (its own elapsed: rows → last ack) | {rows:,} | {imp.own_seconds:.1f} | "
        f"{imp.own_rate:,.0f} | the summary's figures: start-up and the sha256 pass excluded |",
        f"| fold (ready → all folded) | {rows:,} | {fold.seconds:.1f} | "
        f"{rate(rows, fold.seconds)} | applied {fold.applied:,.0f}, duplicates "
        f"{fold.duplicates:,.0f}, rejected {fold.rejected:,.0f}; ready after "
        f"{fold.ready_seconds:.1f} s |",
        f"| fold (process start → all folded) | {rows:,} | {fold.total_seconds:.1f} | "
        f"{rate(rows, fold.total_seconds)} | |",
        "",
        "Import summary:",
        "",
        "```",
        imp.stdout.strip(),
        "```",
    ]
    if imp.profile:
        lines += ["", "Import profile (cProfile, by own time):", "", "```", imp.profile, "```"]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--bootstrap", help="default: CONSENTGATE_BOOTSTRAP, else local broker")
    parser.add_argument("--max-in-flight", type=int, default=50_000)
    parser.add_argument("--profile", action="store_true", help="the import under cProfile")
    parser.add_argument("--keep", action="store_true", help="leave the topics and group")
    parser.add_argument("--note", default="", help="a remark for the results file")
    parser.add_argument("--no-write", action="store_true", help="print only (smoke runs)")
    return parser.parse_args()


def bench(args: argparse.Namespace, stamp: datetime) -> str:
    """Generate, import, fold; the results as markdown."""
    tag = f"bench-{stamp:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    topics = Topics(
        f"consent.changes.v1.{tag}", f"consent.state.v1.{tag}", f"consentgate.dlq.v1.{tag}"
    )
    recipients = [r.id for r in load_policy(POLICY).recipients]
    with open_cluster(use_docker=False) as cluster, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bootstrap = cluster.bootstrap
        admin = AdminClient({"bootstrap.servers": bootstrap})
        path = workdir / "consents.csv"
        t = time.monotonic()
        rows = generate(path, args.rows, recipients)
        file_mib = path.stat().st_size / 2**20
        say(f"generated {rows:,} rows ({file_mib:.1f} MiB) in {time.monotonic() - t:.1f} s")
        create_topics(admin, topics, args.partitions)
        group = f"fold-{tag}"
        try:
            load_before = os.getloadavg()
            say(f"importing into {topics.changes} ...")
            imp = run_import(bootstrap, path, topics, workdir, args)
            say(imp.stdout.strip())
            if imp.appended != rows:
                raise SystemExit(f"{imp.appended} records in {topics.changes}, expected {rows}")
            say(
                f"import: {imp.seconds:.1f} s from process start ({rows / imp.seconds:,.0f} rows/s)"
            )
            say("folding ...")
            fold = run_fold(bootstrap, topics, group, rows, workdir)
            load_after = os.getloadavg()
            say(f"fold: {fold.seconds:.1f} s from ready ({rows / fold.seconds:,.0f} changes/s)")
        finally:
            if not args.keep:
                for future in admin.delete_topics(topics.all(), operation_timeout=30).values():
                    with contextlib.suppress(Exception):  # best-effort cleanup
                        future.result(timeout=30)
                with contextlib.suppress(Exception):
                    for future in admin.delete_consumer_groups([group]).values():
                        future.result(timeout=30)
    return report(
        args=args,
        stamp=stamp,
        rows=rows,
        file_mib=file_mib,
        imp=imp,
        fold=fold,
        load=(load_before, load_after),
        bootstrap=bootstrap,
    )


def main() -> int:
    args = parse_args()
    if args.bootstrap:
        os.environ["CONSENTGATE_BOOTSTRAP"] = args.bootstrap
    stamp = datetime.now(UTC)
    text = bench(args, stamp)
    if args.no_write:
        say(text)
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"consent-import-{stamp:%Y%m%dT%H%M%SZ}.md"
    out.write_text(text)
    say("")
    say(text)
    say(f"written to {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
