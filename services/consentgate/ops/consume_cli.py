"""``consentgate consume SINK``: tail a sink as its consumers read it, decoded, one line per
record.

SINK is a sink name of the policy (``partner.kaede-trading.browsing``) or a topic. It reads
through :class:`consentgate.client.SinkConsumer`, so what it prints is what a client
application gets: read_committed, records decoded to their models, re-delivered events
marked ``DUPLICATE``, and retractions as explicit markers::

    RETRACT key=<the subject's key in this sink> reason=withdrawn change=<change id> ...

Records of another type (e.g. ``consentgate.decisions.v1``) are printed decoded as they are.
``--json`` prints JSON lines (``type``: record, retraction, duplicate, other, undecodable).
Without ``--group`` it reads with a throw-away group and commits nothing; with one it commits
after each printed batch. ``--from-beginning`` applies where the group has no offset yet.
Ctrl-C (or SIGTERM) stops it: the consumer is closed and the exit code is 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import uuid
from datetime import date, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from confluent_kafka.admin import AdminClient

from consentgate.client import Retraction, SinkConsumer, SinkMessage, Undecodable
from consentgate.cluster import resolve_bootstrap
from consentgate.errors import ConsentgateError, DecodeError
from consentgate.policy import load_policy
from consentgate.router.config import DEFAULT_POLICY
from consentgate.serde import Serde
from consentgate.settings import Settings

__all__ = ["register"]

_EVIDENCE_FIELDS = frozenset({"purpose", "recipient", "subject_key", "evidence"})


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "consume",
        help="tail a sink (read_committed), decoded; retractions as RETRACT markers",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("sink", metavar="SINK", help="a sink name of the policy, or a topic")
    parser.add_argument(
        "--from-beginning", action="store_true", help="start at the beginning (default: the end)"
    )
    parser.add_argument("--json", action="store_true", help="JSON lines")
    parser.add_argument("--max", type=int, metavar="N", help="stop after N records")
    parser.add_argument(
        "--group", metavar="G", help="consumer group, offsets committed (default: none kept)"
    )
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy file")
    parser.set_defaults(handler=_consume)


def _topic(args: argparse.Namespace, kafka: dict[str, Any]) -> str:
    if args.policy.exists():
        policy = load_policy(args.policy)
        if args.sink in {s.name for s in policy.sinks}:
            return policy.sink(args.sink).topic
    if args.sink not in AdminClient(kafka).list_topics(timeout=30).topics:
        raise ConsentgateError(f"no sink of {args.policy} and no topic is called {args.sink!r}")
    return str(args.sink)


def _plain(value: object) -> object:
    """JSON for what Avro decodes to besides JSON's own types (times, uuids, bytes)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class _Printer:
    """One line per record on stdout, flushed (the command is often piped)."""

    def __init__(self, serde: Serde, as_json: bool) -> None:
        self.serde, self.as_json = serde, as_json

    def _out(self, line: str) -> None:
        print(line, flush=True)

    def _json(self, kind: str, where: Any, **fields: Any) -> None:
        head = {"type": kind, "topic": where.topic, "partition": where.partition}
        head.update(offset=where.offset, key=where.key, **fields)
        self._out(json.dumps(head, sort_keys=True, default=_plain))

    def record(self, msg: SinkMessage) -> None:
        record = msg.record
        if self.as_json:
            self._json("record", msg, event_id=msg.event_id, record=record.model_dump(mode="json"))
            return
        ev = record.evidence
        parts = [f"{msg.where} key={msg.key} event={msg.event_id} purpose={record.purpose}"]
        if record.recipient:
            parts.append(f"recipient={record.recipient}")
        parts.append(f"change={ev.consent_change_id} policy={ev.policy_version} |")
        data = record.model_dump(mode="json", exclude_none=True)
        parts += [f"{k}={v}" for k, v in data.items() if k not in _EVIDENCE_FIELDS]
        self._out(" ".join(parts))

    def retraction(self, r: Retraction) -> None:
        if self.as_json:
            self._json(
                "retraction",
                r,
                reason=r.reason,
                change_id=r.change_id,
                purpose=r.purpose,
                policy_version=r.policy_version,
            )
            return
        self._out(
            f"RETRACT key={r.key} reason={r.reason} change={r.change_id} purpose={r.purpose}"
            f" policy={r.policy_version} at={r.where}"
        )

    def duplicate(self, msg: SinkMessage) -> None:
        if self.as_json:
            self._json("duplicate", msg, event_id=msg.event_id)
            return
        self._out(f"DUPLICATE event={msg.event_id} key={msg.key} at={msg.where} (dropped)")

    def other(self, bad: Undecodable) -> None:
        try:  # not a sink record, but maybe one of ours (decisions, provisions, ...)
            name, value = self.serde.decode(bad.error.raw)
        except DecodeError:
            if self.as_json:
                self._json("undecodable", bad, error=bad.error.reason)
            else:
                self._out(f"UNDECODABLE at={bad.where} key={bad.key}: {bad.error.reason}")
            return
        if self.as_json:
            self._json("other", bad, schema=name, value=value)
        else:
            text = json.dumps(value, sort_keys=True, default=_plain)
            self._out(f"{bad.where} key={bad.key} {name.rsplit('.', 1)[-1]} {text}")


def _consume(args: argparse.Namespace) -> int:
    settings = Settings()
    kafka = settings.kafka_config(resolve_bootstrap(settings))
    topic = _topic(args, kafka)
    serde = Serde.from_settings()
    out = _Printer(serde, args.json)
    consumer = SinkConsumer(
        topic,
        args.group or f"consentgate-consume-{uuid.uuid4().hex[:12]}",
        on_record=out.record,
        on_retraction=out.retraction,
        on_duplicate=out.duplicate,
        on_error=out.other,
        config=kafka,
        serde=serde,
        from_beginning=args.from_beginning,
        commit=args.group is not None,
    )

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        consumer.stop()

    previous = signal.signal(signal.SIGTERM, on_term)
    printed = 0
    try:
        while not consumer.stopping and (args.max is None or printed < args.max):
            left = None if args.max is None else args.max - printed
            printed += consumer.poll(0.5, max_messages=left)
    except KeyboardInterrupt:
        pass  # Ctrl-C: a clean stop
    except BrokenPipeError:  # `consume ... | head`: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        signal.signal(signal.SIGTERM, previous)
        consumer.close()
    return 0
