"""Run every benchmark, one after the other: ``make bench``.

    .venv/bin/python bench/run.py [--only NAME ...] [--bootstrap HOST:PORT]

Runs each ``bench/*_bench.py`` (sorted by name) with this interpreter and its default
arguments; each prints its table and writes ``bench/results/<name>.md``. ``--only router``
runs ``router_bench.py`` alone, ``--only router_v2`` runs ``router_v2_bench.py`` (~6 min);
``--bootstrap`` is handed to the scripts that need Kafka as ``CONSENTGATE_BOOTSTRAP``
(without it they find or start a cluster themselves). A failing script does not stop the
others; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def scripts(only: list[str] | None) -> list[Path]:
    found = sorted(BENCH.glob("*_bench.py"))
    if only:
        wanted = {name.removesuffix(".py").removesuffix("_bench") for name in only}
        found = [s for s in found if s.stem.removesuffix("_bench") in wanted]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="e.g. serde decide router")
    parser.add_argument("--bootstrap", help="Kafka HOST:PORT for the benchmarks that need one")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.bootstrap:
        env["CONSENTGATE_BOOTSTRAP"] = args.bootstrap
    todo = scripts(args.only)
    if not todo:
        print(f"no benchmark matches {args.only}", file=sys.stderr)
        return 2
    outcomes: list[tuple[str, int, float]] = []
    for script in todo:
        print(f"\n=== {script.name} ===", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, str(script)], env=env, check=False).returncode
        outcomes.append((script.name, code, time.monotonic() - started))
    print("\n=== summary ===")
    for name, code, took in outcomes:
        print(f"{name:<24} {'ok' if code == 0 else f'FAILED ({code})':<12} {took:7.1f} s")
    return 1 if any(code for _, code, _ in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
