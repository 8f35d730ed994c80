"""``consentgate consent ...``: record consent through the service's write path, read it
back, and run the service.

- ``grant | withdraw | erase | gpc | tcf``: validate, append to consent-changes, print the
  change id and its partition/offset; ``--wait`` waits until consent-state shows it.
  ``withdraw --backdate-to TIME --reason TEXT`` is the operator path for a backdated
  withdrawal (logged with ``--actor``).
- ``show SUBJECT``: the subject's timeline from consent-state.
- ``import FILE``: bulk load (see :mod:`consentgate.consent.importer`).
- ``fold``: the consent fold worker (faust); ``serve``: the HTTP API.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from pathlib import Path
from typing import Any

from consentgate.consent.changelog import ChangeLog
from consentgate.consent.fold_config import FoldConfig, FoldTopics
from consentgate.consent.requests import ChangeRequest, Rejected
from consentgate.consent.service import ConsentService
from consentgate.consent.state_reader import StateReader, SubjectState
from consentgate.errors import ConsentgateError
from consentgate.models.consent import ConsentChange
from consentgate.ops.cli_args import iso_time
from consentgate.policy.load import load_policy
from consentgate.router.config import DEFAULT_POLICY
from consentgate.serde import Serde, SerdeSettings
from consentgate.settings import Settings

__all__ = ["register", "render_state"]

log = logging.getLogger(__name__)

CHANGES = "consent.changes.v1"
STATE = "consent.state.v1"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("consent", help="record, read and serve consent")
    sub = parser.add_subparsers(dest="consent_command", metavar="ACTION", required=True)
    for action in ("grant", "withdraw"):
        p = sub.add_parser(action, help=f"{action} a purpose (for a recipient)")
        p.add_argument("subject")
        p.add_argument("purpose")
        p.add_argument("--recipient", help="partner id; omit for first-party purposes")
        if action == "grant":
            p.add_argument("--effective-time", type=iso_time, help="ISO 8601, not in the past")
            p.add_argument("--expires-at", type=iso_time, help="ISO 8601: the grant lapses then")
        else:
            p.add_argument(
                "--backdate-to",
                type=iso_time,
                help="operator path: the withdrawal took effect at this earlier time",
            )
            p.add_argument("--reason", help="why the withdrawal is backdated (logged)")
        _write_options(p)
    erase = sub.add_parser("erase", help="erase the subject: every grant ends, data retracted")
    erase.add_argument("subject")
    _write_options(erase)
    gpc = sub.add_parser("gpc", help="record a Global Privacy Control opt-out")
    gpc.add_argument("subject")
    _write_options(gpc)
    tcf = sub.add_parser("tcf", help="record an IAB TCF v2.2 TC string")
    tcf.add_argument("subject")
    tcf.add_argument("tc_string")
    _write_options(tcf)

    show = sub.add_parser("show", help="a subject's consent timeline from consent-state")
    show.add_argument("subject")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--state-topic", default=STATE)
    show.set_defaults(handler=_show)

    fold = sub.add_parser("fold", help="run the consent fold (consent-changes -> consent-state)")
    _topic_options(fold)
    fold.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy file")
    fold.add_argument("--group", default="consentgate-fold", help="consumer group / faust app id")
    fold.add_argument("--instance-id", help="static group membership id (e.g. the pod name)")
    fold.add_argument("--web-host", default="127.0.0.1")
    fold.add_argument(
        "--web-port", type=int, default=8071, help="/healthz /readyz /metrics (-1: off)"
    )
    fold.add_argument("--batch", type=int, default=1000, help="changes per batch at most")
    fold.set_defaults(handler=_fold)

    # these two import this module's options: registered last, imported here
    from consentgate.consent import api_cli, importer_cli  # noqa: PLC0415
    from consentgate.console import cli as console_cli  # noqa: PLC0415

    importer_cli.register(sub)
    api_cli.register(sub)
    console_cli.register(sub)


def _topic_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--changes-topic", default=CHANGES)
    parser.add_argument("--state-topic", default=STATE)
    parser.add_argument("--dlq-topic", default="consentgate.dlq.v1")


def _write_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notice-version", help="privacy notice version shown")
    parser.add_argument("--change-id", help="idempotency key: a retry carries the same one")
    parser.add_argument("--actor", help="who makes the change (default: the OS user)")
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy file")
    parser.add_argument("--changes-topic", default=CHANGES)
    parser.add_argument("--state-topic", default=STATE)
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS until consent-state shows the change (needs the fold)",
    )
    parser.set_defaults(handler=_write)


def _kafka() -> dict[str, Any]:
    settings = Settings()
    if not settings.bootstrap:
        raise ConsentgateError("no cluster: set CONSENTGATE_BOOTSTRAP (host:port[,host:port])")
    return settings.kafka_config(None, logger=logging.getLogger("librdkafka"))


def _write(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    serde = Serde.from_settings(SerdeSettings())
    kafka = _kafka()
    changelog = ChangeLog(kafka, args.changes_topic, serde)
    service = ConsentService(policy, changelog)
    actor = args.actor or f"cli:{getpass.getuser()}"
    try:
        changes = _changes(service, args, actor)
        receipts = service.record(changes)
    except Rejected as exc:
        print(f"rejected: {exc} (field {exc.path or '-'})", file=sys.stderr)
        return 2
    finally:
        changelog.close()
    for change, receipt in zip(changes, receipts, strict=True):
        what = " ".join(x for x in (change.purpose, change.recipient) if x)
        print(
            f"{change.action.value} {change.subject_id} {what}".rstrip()
            + f": change {receipt.change_id} at {args.changes_topic}"
            + f"[{receipt.partition}]@{receipt.offset}"
        )
    if args.wait > 0:
        reader = StateReader(kafka, args.state_topic, serde)
        try:
            state = reader.wait_visible(args.subject, [c.change_id for c in changes], args.wait)
        finally:
            reader.close()
        if state is None:
            print(f"not in {args.state_topic} after {args.wait:.0f} s (is the fold running?)")
            return 1
        print(f"in {args.state_topic}: timeline version {_version(state)}")
    return 0


def _changes(service: ConsentService, args: argparse.Namespace, actor: str) -> list[ConsentChange]:
    command = args.consent_command
    if command == "gpc":
        return service.gpc(args.subject, change_id=args.change_id, actor=actor)
    if command == "tcf":
        return service.tcf(args.subject, args.tc_string, change_id=args.change_id, actor=actor)
    backdate = getattr(args, "backdate_to", None)
    request = ChangeRequest(
        subject_id=args.subject,
        action=command.upper(),
        purpose=getattr(args, "purpose", None),
        recipient=getattr(args, "recipient", None),
        effective_time=backdate or getattr(args, "effective_time", None),
        expires_at=getattr(args, "expires_at", None),
        notice_version=args.notice_version,
        method="CLI",
        change_id=args.change_id,
        backdate_reason=getattr(args, "reason", None),
    )
    return [service.change(request, actor=actor, operator=True)]


def _version(state: SubjectState) -> int:
    return state.timeline.version if state.timeline is not None else 0


def _show(args: argparse.Namespace) -> int:
    reader = StateReader(_kafka(), args.state_topic, Serde.from_settings(SerdeSettings()))
    try:
        state = reader.read(args.subject)
    finally:
        reader.close()
    if args.json:
        print(json.dumps(render_state(state), indent=2))
    else:
        _print_state(state)
    return 0 if state.status == "present" else 1


def render_state(state: SubjectState) -> dict[str, Any]:
    """The subject's state as JSON-ready data (the CLI's --json and the API's timeline)."""
    out: dict[str, Any] = {
        "subject_id": state.subject_id,
        "partition": state.partition,
        "status": state.status,
    }
    timeline = state.timeline
    if timeline is None:
        return out
    record = timeline.record
    out.update(
        version=record.version,
        updated_at=record.updated_at.isoformat(),
        erased=timeline.erased,
        erased_at=None if record.erased_at is None else record.erased_at.isoformat(),
        trimmed_before=(
            None if record.trimmed_before is None else record.trimmed_before.isoformat()
        ),
        grants=[
            {
                "purpose": purpose,
                "recipient": recipient,
                "intervals": [
                    {
                        "start": i.start.isoformat(),
                        "end": None if i.end is None else i.end.isoformat(),
                        "end_reason": None if i.end_reason is None else str(i.end_reason),
                    }
                    for i in timeline.intervals(purpose, recipient)
                ],
            }
            for purpose, recipient in timeline.keys()  # noqa: SIM118  # not a dict
        ],
        changes=[c.model_dump(mode="json") for c in record.changes],
    )
    return out


def _print_state(state: SubjectState) -> None:
    if state.timeline is None:
        word = "erased (tombstone)" if state.status == "erased" else "no consent record"
        print(f"{state.subject_id}: {word} (partition {state.partition})")
        return
    data = render_state(state)
    print(
        f"{state.subject_id}: version {data['version']}, updated {data['updated_at']}"
        + (f", erased at {data['erased_at']}" if data["erased_at"] else "")
    )
    for grant in data["grants"]:
        who = grant["recipient"] or "first party"
        for i in grant["intervals"]:
            end = i["end"] or "open"
            reason = f" ({i['end_reason']})" if i["end_reason"] else ""
            print(f"  {grant['purpose']:<18} {who:<16} {i['start']} -> {end}{reason}")
    print(f"  {len(data['changes'])} changes retained")


def _fold(args: argparse.Namespace) -> int:
    from consentgate.consent.fold_run import run_fold  # noqa: PLC0415  # faust: import on use

    settings = Settings()
    if not settings.bootstrap:
        log.error("no cluster: set CONSENTGATE_BOOTSTRAP (host:port[,host:port])")
        return 78
    config = FoldConfig(
        bootstrap=settings.bootstrap,
        topics=FoldTopics(args.changes_topic, args.state_topic, args.dlq_topic),
        group=args.group,
        instance_id=args.instance_id,
        batch=args.batch,
        web_host=args.web_host,
        web_port=args.web_port,
    )
    return run_fold(config, args.policy)
