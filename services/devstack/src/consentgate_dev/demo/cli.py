"""``consentgate demo``: the job-site case end to end on the local broker.

The sizes scale together: ``--never-shared`` defaults to the case's share of students who
never consented to partner sharing (7,983 of 74,878), of whatever ``--students`` is; sizes
that cannot make a case (more never-sharing students than students, no partner) are refused
with a message, not a traceback.
"""

from __future__ import annotations

import argparse
from typing import Any

from consentgate.errors import ConfigError
from consentgate_dev.demo.run import DemoOptions, run_demo

__all__ = ["demo_options", "register"]

CASE_STUDENTS = 74_878
CASE_NEVER_SHARED = 7_983
CASE_PARTNERS = 38
MAX_PARTNERS = 99  # client-01 .. client-99


def demo_options(
    students: int, partners: int, never_shared: int | None, *, keep: bool = False
) -> DemoOptions:
    """The demo's sizes, checked; ``never_shared`` None scales with ``students``."""
    if students < 2:
        raise ConfigError(f"--students must be at least 2 (one of them withdraws), not {students}")
    if not 1 <= partners <= MAX_PARTNERS:
        raise ConfigError(f"--partners must be between 1 and {MAX_PARTNERS}, not {partners}")
    if never_shared is None:
        never_shared = round(students * CASE_NEVER_SHARED / CASE_STUDENTS)
    if not 0 <= never_shared < students:
        raise ConfigError(
            f"--never-shared must be between 0 and --students - 1 ({students - 1}),"
            f" not {never_shared}"
        )
    return DemoOptions(students=students, partners=partners, never_shared=never_shared, keep=keep)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the job-site case end to end",
        description="The job-site case on the local broker: consent through the consent"
        " service, events through a router worker, one withdrawal through the HTTP API with"
        " its retractions, then the independent audit.",
    )
    parser.add_argument(
        "--students",
        type=int,
        default=CASE_STUDENTS,
        help=f"students in the case (default {CASE_STUDENTS:,}, as in 2019)",
    )
    parser.add_argument(
        "--partners",
        type=int,
        default=CASE_PARTNERS,
        help=f"client companies receiving partner data (default {CASE_PARTNERS},"
        f" at most {MAX_PARTNERS})",
    )
    parser.add_argument(
        "--never-shared",
        type=int,
        default=None,
        help="students who never consent to partner sharing (default: the case's share,"
        f" {CASE_NEVER_SHARED:,} of {CASE_STUDENTS:,}, of --students)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the demo topics afterwards")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    return run_demo(demo_options(args.students, args.partners, args.never_shared, keep=args.keep))
