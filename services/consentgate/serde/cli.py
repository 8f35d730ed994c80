"""``consentgate schemas ...``: check schema evolution and release schema versions.

consentgate schemas check   [--schemas-dir DIR]   exit 1 when a current schema cannot
                                                  read a released version; lists every
                                                  schema with its fingerprint
consentgate schemas release [--schemas-dir DIR]   snapshot changed schemas into history/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from consentgate.serde.evolution import check_backward, release
from consentgate.serde.fingerprint import fingerprint_int
from consentgate.serde.repository import SchemaRepository

__all__ = ["register"]


def _check(args: argparse.Namespace) -> int:
    repository = SchemaRepository.load(args.schemas_dir)
    problems = check_backward(repository)
    failed = {p.name for p in problems}
    print(f"schemas in {repository.directory}:")
    print(f"  {'record':<40} {'fingerprint (wire, LE)':<22} {'as int64':>21}  released  status")
    for name in repository.names():
        entry = repository.current(name)
        versions = ",".join(f"v{e.version}" for e in repository.history(name)) or "-"
        status = "INCOMPATIBLE" if name in failed else "ok"
        print(
            f"  {name:<40} {entry.fingerprint.hex():<22} {fingerprint_int(entry.fingerprint):>21}"
            f"  {versions:<8}  {status}"
        )
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print(
            f"schemas check failed: {len(problems)} incompatible change(s); restore "
            "compatibility (e.g. give new fields a default) or introduce a new record name",
            file=sys.stderr,
        )
        return 1
    print(f"schemas check passed: {len(repository.names())} schemas backward compatible")
    return 0


def _release(args: argparse.Namespace) -> int:
    repository = SchemaRepository.load(args.schemas_dir)
    problems = check_backward(repository)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    written = release(repository)
    for path in written:
        print(f"released {path}")
    if not written:
        print("nothing to release: every schema matches its latest released version")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``schemas`` command and its actions to the top-level CLI."""
    parser = subparsers.add_parser("schemas", help="Avro schema contracts: evolution checks")
    actions = parser.add_subparsers(dest="schemas_action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="fail if a current schema cannot read a released version"
    )
    rel = actions.add_parser("release", help="snapshot changed schemas into schemas/history/")
    for action, handler in ((check, _check), (rel, _release)):
        action.add_argument(
            "--schemas-dir",
            type=Path,
            default=None,
            help="schemas directory (default: $CONSENTGATE_SCHEMAS_DIR or the repo's schemas/)",
        )
        action.set_defaults(handler=handler)
