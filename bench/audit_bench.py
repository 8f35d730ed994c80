"""Audit benchmark: records/s of ``consentgate audit`` over a demo run's topics.

    .venv/bin/consentgate demo --keep [--students 74878]       # the data: the case, kept
    .venv/bin/python bench/audit_bench.py [--run .state/demo/<stamp>] [--workers 1 2]

The demo writes everything an audit reads (consent changes through the consent service, raw
events, the router's decisions, provisions and sinks, a withdrawal with its retractions) and,
with ``--keep``, leaves the topics (suffix ``.demo-<stamp>``) and its policy in
``.state/demo/<stamp>/``. This runs ``consentgate audit --json`` on them as a subprocess (the
command as operators run it), once per ``--workers`` value, and reports wall time, the
audit's own ``took_s``, CPU seconds (``RUSAGE_CHILDREN``), and records read per second
(consent changes + raw + decisions + provisions + sink records). Written to
bench/results/audit.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "audit.md"
DEMO_KEY = "demo-only-master-key-not-a-secret"


def latest_run() -> Path:
    runs = sorted((REPO / ".state" / "demo").glob("2*"))
    if not runs:
        raise SystemExit("no kept demo run: make one with `consentgate demo --keep`")
    return runs[-1]


def audit_once(run: Path, workers: int) -> dict[str, float]:
    suffix = f"demo-{run.name}"
    cmd = [sys.executable, "-m", "consentgate", "audit", "--json", "--settle", "0"]
    cmd += ["--policy", str(run / "policy.yaml"), "--workers", str(workers)]
    cmd += ["--changes-topic", f"consent.changes.v1.{suffix}"]
    cmd += ["--decisions-topic", f"consentgate.decisions.v1.{suffix}"]
    cmd += ["--provisions-topic", f"consentgate.provisions.v1.{suffix}"]
    cmd += ["--dlq-topic", f"consentgate.dlq.v1.{suffix}"]
    env = {"CONSENTGATE_PSEUDONYM_MASTER_KEY": DEMO_KEY, **os.environ}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, check=False, timeout=1800)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise SystemExit(f"audit failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    report = json.loads(done.stdout)
    read = report["read"]
    records = sum(
        int(read.get(k, 0))
        for k in ("consent_changes", "raw_records", "decisions", "provisions", "sink_records")
    )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "workers": workers,
        "verdict": report["verdict"],
        "records": records,
        "sink_records": int(read.get("sink_records", 0)),
        "took_s": float(report["took_s"]),
        "wall_s": wall,
        "cpu_s": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a kept demo run (default: the latest)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    run = args.run or latest_run()
    rows = []
    for workers in args.workers:
        print(f"audit of {run.name} with {workers} process(es) ...", flush=True)
        row = audit_once(run, workers)
        print(json.dumps(row), flush=True)
        rows.append(row)
    lines = [
        f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} CPUs, demo run {run.name}\n",
        "| workers | verdict | records read | sink records | audit took s | wall s | "
        "records/s | CPU µs/record |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['verdict']} | {r['records']:,} | {r['sink_records']:,} | "
            f"{r['took_s']:.1f} | {r['wall_s']:.1f} | {r['records'] / r['took_s']:,.0f} | "
            f"{r['cpu_s'] / r['records'] * 1e6:,.0f} |"
        )
    if not RESULTS.exists():
        RESULTS.write_text("# consentgate audit benchmark\n\nWritten by bench/audit_bench.py.\n")
    with RESULTS.open("a") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
