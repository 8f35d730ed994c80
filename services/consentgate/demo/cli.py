"""``consentgate demo``: the job-site case end to end on the local broker."""

from __future__ import annotations

import argparse
from typing import Any

from consentgate.demo.run import DemoOptions, run_demo

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="run the job-site case end to end")
    parser.add_argument("--students", type=int, default=74_878)
    parser.add_argument("--partners", type=int, default=38)
    parser.add_argument("--never-shared", type=int, default=7_983)
    parser.add_argument("--keep", action="store_true", help="keep the demo topics")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    return run_demo(
        DemoOptions(
            students=args.students,
            partners=args.partners,
            never_shared=args.never_shared,
            keep=args.keep,
        )
    )
