"""``consentgate policy check FILE`` and ``consentgate policy diff OLD NEW --events FILE``.

check: validate a policy, print its sinks as a table and its version; exit 1 if invalid.
diff:  decide the same events under two policies and list, per sink, the events whose routing
       changes. Events: JSON lines ``{"source": "<source name>", "event": {...}}`` with times
       as ISO 8601 (with offset) or epoch milliseconds. Consent: optional JSON lines of
       ConsentChange objects, applied per subject; without it every subject is unknown, so
       everything is denied under both policies.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consentgate.consent.timeline import Timeline, apply
from consentgate.errors import PolicyError, ValidationError
from consentgate.models.consent import ConsentChange
from consentgate.policy.diff import SinkDiff, diff_routing
from consentgate.policy.load import check_policy
from consentgate.policy.model import Policy

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``policy`` command and its sub-commands."""
    parser = subparsers.add_parser("policy", help="check and compare routing policies")
    sub = parser.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)

    check = sub.add_parser("check", help="validate a policy file and show its sinks")
    check.add_argument("file", type=Path, help="policy YAML")
    check.set_defaults(handler=_check)

    diff = sub.add_parser("diff", help="which events would be routed differently")
    diff.add_argument("old", type=Path, help="current policy YAML")
    diff.add_argument("new", type=Path, help="proposed policy YAML")
    diff.add_argument("--events", type=Path, required=True, help='JSON lines {"source", "event"}')
    diff.add_argument("--consent", type=Path, help="JSON lines of ConsentChange objects")
    diff.add_argument("--now", type=_aware_time, help="processing time (ISO 8601); default now")
    diff.add_argument("--limit", type=int, default=20, help="events listed per sink (default 20)")
    diff.add_argument("--exit-code", action="store_true", help="exit 1 if any routing changes")
    diff.set_defaults(handler=_diff)


def _check(args: argparse.Namespace) -> int:
    try:
        checked = check_policy(args.file)
    except PolicyError as exc:
        print(f"invalid policy:\n{exc}", file=sys.stderr)
        return 1
    policy = checked.policy
    print(f"policy {args.file}: valid, version {policy.version}")
    for source in policy.sources:
        print(f"source {source.name}: {source.topic} ({source.schema_name})")
    print()
    print(_table(_SINK_HEADERS, [_sink_row(policy, i) for i in range(len(policy.sinks))]))
    if checked.warnings:
        print("\nwarnings:")
        for warning in checked.warnings:
            print(f"  {warning}")
    return 0


_SINK_HEADERS = (
    "SINK", "TOPIC", "PURPOSE", "RECIPIENT", "EXTRA", "SUBJECT", "#FIELDS", "RETRACTABLE"
)  # fmt: skip


def _sink_row(policy: Policy, index: int) -> list[str]:
    sink = policy.sinks[index]
    return [
        sink.name,
        sink.topic,
        sink.purpose,
        sink.recipient or "(first party)",
        ",".join(sink.extra_purposes) or "-",
        sink.subject_id.value,
        str(len(sink.fields)),
        "yes" if sink.retractable else "NO",
    ]


def _diff(args: argparse.Namespace) -> int:
    try:
        old = check_policy(args.old).policy
        new = check_policy(args.new).policy
    except PolicyError as exc:
        print(f"invalid policy:\n{exc}", file=sys.stderr)
        return 1
    now = args.now or datetime.now(UTC)
    timelines = _timelines(args.consent) if args.consent else {}
    events = list(_events(args.events))
    diffs = diff_routing(old, new, events, timelines, now)
    print(f"old {old.version} ({args.old}) -> new {new.version} ({args.new})")
    print(f"{len(events)} events, {len(timelines)} subjects with consent, now {now.isoformat()}\n")
    rows = [
        [d.sink, str(len(d.changes)), str(d.newly_allowed), str(d.newly_denied), _notes(d)]
        for d in diffs
    ]
    print(_table(["SINK", "CHANGED", "NOW ALLOWED", "NOW DENIED", "DECLARATION"], rows))
    for d in diffs:
        _print_changes(d, args.limit)
    changed = any(d.changes for d in diffs)
    return 1 if args.exit_code and changed else 0


def _notes(d: SinkDiff) -> str:
    return "; ".join(d.notes) or "-"


def _print_changes(d: SinkDiff, limit: int) -> None:
    if not d.changes:
        return
    print(f"\n{d.sink}:")
    for change in d.changes[:limit]:
        was = change.old.reason if change.old is not None else "absent"
        becomes = change.new.reason if change.new is not None else "absent"
        print(f"  {change.event_id}: {was} -> {becomes}")
    if len(d.changes) > limit:
        print(f"  ... {len(d.changes) - limit} more")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValidationError(f"{path}:{number}: not JSON: {exc}") from exc


def _events(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, item in _json_lines(path):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("source"), str)
            and isinstance(item.get("event"), dict)
        ):
            raise ValidationError(f'{path}:{number}: expected {{"source": name, "event": {{...}}}}')
        yield item["source"], item["event"]


def _timelines(path: Path) -> dict[str, Timeline]:
    timelines: dict[str, Timeline] = {}
    for number, item in _json_lines(path):
        try:
            change = ConsentChange.from_avro(item)
        except ValidationError as exc:
            raise ValidationError(f"{path}:{number}: {exc}", path=exc.path) from exc
        timelines[change.subject_id] = apply(timelines.get(change.subject_id), change)
    return timelines


def _aware_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a UTC offset, e.g. {text}+00:00")
    return value.astimezone(UTC)
