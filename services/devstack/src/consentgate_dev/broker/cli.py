"""``consentgate broker start | stop | status | logs``: the local development broker."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from consentgate_dev.broker.local import LocalBroker

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("broker", help="run a local single-node Kafka broker")
    sub = parser.add_subparsers(dest="broker_command", metavar="ACTION", required=True)
    sub.add_parser("start", help="start it (downloads Kafka's jars once)").set_defaults(
        handler=_start
    )
    sub.add_parser("stop", help="stop it gracefully").set_defaults(handler=_stop)
    sub.add_parser("status", help="bootstrap address, pid, version").set_defaults(handler=_status)
    logs = sub.add_parser("logs", help="print the end of the broker's log")
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(handler=_logs)


def _start(args: argparse.Namespace) -> int:
    broker = LocalBroker()
    started = time.monotonic()
    if broker.start():
        print(
            f"broker started at {broker.bootstrap} in {time.monotonic() - started:.1f} s "
            f"(pid {broker.pid()})"
        )
    else:
        print(f"broker already running at {broker.bootstrap} (pid {broker.pid()})")
    if broker.sasl_bootstrap:
        print(f"SASL/SCRAM-SHA-512 listener at {broker.sasl_bootstrap} (ACLs enforced there)")
    print(f"export CONSENTGATE_BOOTSTRAP={broker.bootstrap}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    broker = LocalBroker()
    if broker.stop():
        print("broker stopped")
    else:
        print("broker was not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = LocalBroker().status()
    state = "running" if status.running else "stopped"
    print(f"state:     {state}")
    print(f"bootstrap: {status.bootstrap}")
    print(f"pid:       {status.pid if status.pid is not None else '-'}")
    print(f"version:   Apache Kafka {status.version} (KRaft, single node)")
    print(f"data:      {status.state_dir}")
    return 0 if status.running else 3


def _logs(args: argparse.Namespace) -> int:
    broker = LocalBroker()
    print(broker.tail(args.lines))
    if args.follow:
        path = broker.log_file
        with path.open(encoding="utf-8", errors="replace") as fh:
            fh.seek(0, 2)
            try:
                while True:
                    line = fh.readline()
                    if line:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                    else:
                        time.sleep(0.5)
            except KeyboardInterrupt:
                return 0
    return 0
