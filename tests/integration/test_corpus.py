"""The bad-input corpus (tests/corpus/*.yaml, one kind per file), on the real broker.

Every record input is produced beside well-formed traffic into one running router and
consent fold; afterwards each must have exactly its expected outcome, found by reading the
topics: a dead letter (matched by source topic, partition and offset) with its stage, error
type and reason, or a decision with the expected reasons, and nothing else. The router
keeps running throughout, the well-formed events are decided as usual, and the accounting
reconciles: every raw record has one decision or one dead letter. Write-path inputs (TCF)
must be refused by the consent service with their reason; policy inputs must stop the
router at startup with a clear error (exit 78, no traceback). See tests/corpus/README.md.
"""

from __future__ import annotations

import io
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import KafkaError, Message, Producer
from fastavro import parse_schema, schemaless_writer

from consentgate.errors import ValidationError
from consentgate.router.partitioner import partition_for
from consentgate.settings import Settings
from tests.integration import faults
from tests.integration.conftest import EnvFactory
from tests.integration.consent_harness import new_change
from tests.integration.faults import write_report
from tests.integration.router_harness import RouterEnv
from tests.unit.tcf_encode import TcCore, bits_to_base64url, core_bits

pytestmark = [pytest.mark.integration, pytest.mark.faults, faults.TIMEOUT]

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
DLQ_MAX_BYTES = 900_000  # the router's default loop.dlq_max_bytes (raw bytes kept)
HEADER_BYTES = 10  # single-object encoding: 2 marker bytes + an 8-byte fingerprint


def load_corpus() -> dict[str, dict[str, Any]]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(CORPUS.glob("*.yaml"))}


KINDS = load_corpus()


def test_the_corpus_has_at_least_30_kinds_each_with_an_expected_outcome() -> None:
    assert len(KINDS) >= 30
    for name, kind in KINDS.items():
        assert kind.get("about"), name
        assert kind.get("expect"), name
        assert sum(k in kind for k in ("input", "service", "policy")) == 1, name


# -- building inputs ---------------------------------------------------------------------
def _time(spec: object, now: datetime) -> object:
    """'+3650d' / '-1d' / '+1h' relative to now, an ISO time, or a raw long (ms)."""
    if isinstance(spec, str):
        m = re.fullmatch(r"([+-])(\d+)([dh])", spec)
        if m:
            unit = timedelta(days=1) if m[3] == "d" else timedelta(hours=1)
            delta = int(m[2]) * unit
            return now + delta if m[1] == "+" else now - delta
        return datetime.fromisoformat(spec)
    return spec


def _datum(schema: str, subject: str, now: datetime, extra: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {"event_id": uuid.uuid4(), "subject_id": subject, "event_time": now}
    if schema == "BrowsingEvent":
        base |= {"event_type": "JOB_VIEW", "job_id": "job-1", "company_id": "client-01"}
    elif schema == "DerivedScore":
        base |= {"score_type": "offer_decline_probability", "score": 0.5, "model_version": "m"}
    for k, v in extra.items():
        base[k] = _time(v, now) if k.endswith("_time") else v
    return base


@dataclass
class Built:
    name: str
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int
    subject: str
    event_id: str | None = None
    change_id: str | None = None
    copies: int = 1
    offsets: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset)


def build(env: RouterEnv, name: str, spec: dict[str, Any], rng: random.Random) -> Built:
    now = datetime.now(UTC)
    subject = f"corpus-{name}"
    value_spec = spec["value"]
    datum_extra = dict(value_spec.get("datum", {}))
    subject = str(datum_extra.get("subject_id", subject)) or subject
    event_id: str | None = None
    change_id: str | None = None
    value: bytes | None
    if value_spec.get("tombstone"):
        value = None
    elif "bytes" in value_spec:
        value = value_spec["bytes"].encode()
    elif "text" in value_spec:
        value = value_spec["text"].encode()
    elif "hex" in value_spec:
        value = bytes.fromhex(value_spec["hex"])
    elif "random" in value_spec:
        value = rng.randbytes(int(value_spec["random"]))
    elif "encode" in value_spec:
        schema = value_spec["encode"]
        if schema == "ConsentChange":
            extra = {k: _time(v, now) if k.endswith("_time") else v for k, v in datum_extra.items()}
            change = new_change(
                subject,
                extra.pop("action", "GRANT"),
                extra.pop("purpose", "analytics"),
                extra.pop("recipient", None),
                at=extra.pop("effective_time", None) or now,
                recorded=now,
            )
            value = env.serde.encode(change)
            change_id = change.change_id
        else:
            datum = _datum(schema, subject, now, datum_extra)
            event_id = str(datum["event_id"])
            value = env.serde.encode(datum, schema)
    else:  # encode_as: a foreign writer schema under the named schema's header
        header = env.serde.encode(
            _datum(value_spec["encode_as"], subject, now, {}), value_spec["encode_as"]
        )[:HEADER_BYTES]
        fields = [{"name": n, "type": t} for n, t in value_spec["fields"]]
        foreign = parse_schema({"type": "record", "name": "Foreign", "fields": fields})
        datum = {
            "event_id": str(uuid.uuid4()),
            "subject_id": subject,
            "event_time": int(now.timestamp() * 1000),
        } | datum_extra
        buf = io.BytesIO()
        schemaless_writer(buf, foreign, datum)
        value = header + buf.getvalue()
    value = _transform(value, spec.get("transform", {}))
    key_spec = spec.get("key", "subject")
    key = None if key_spec == "none" else (subject if key_spec == "subject" else key_spec).encode()
    home = partition_for(subject.encode(), env.partitions)
    partition = (home + 1) % env.partitions if spec.get("partition") == "other" else home
    topic = {
        "browsing": env.plan.browsing_topic,
        "scores": env.plan.scores_topic,
        "changes": env.changes,
    }[spec["topic"]]
    return Built(
        name, topic, key, value, partition, subject, event_id, change_id, int(spec.get("copies", 1))
    )


def _transform(value: bytes | None, steps: dict[str, Any]) -> bytes | None:
    if value is None:
        return None
    if "truncate" in steps:
        value = value[: int(len(value) * float(steps["truncate"]))]
    if "keep" in steps:
        value = value[: int(steps["keep"])]
    if "first_byte" in steps:
        value = bytes([int(steps["first_byte"])]) + value[1:]
    if "fingerprint" in steps:
        value = value[:2] + bytes.fromhex(steps["fingerprint"]) + value[HEADER_BYTES:]
    if "append" in steps:
        value += bytes.fromhex(steps["append"])
    return value


def produce_all(env: RouterEnv, items: list[Built]) -> None:
    producer = Producer(
        Settings().producer_config(env.bootstrap, **{"message.max.bytes": 2_000_000})
    )
    errors: list[KafkaError] = []

    def acked(item: Built):  # type: ignore[no-untyped-def]
        def on(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(err)
            else:
                item.offsets.append((msg.partition(), msg.offset()))  # type: ignore[arg-type]

        return on

    for item in items:
        for _ in range(item.copies):
            producer.produce(
                item.topic, item.value, item.key, partition=item.partition, on_delivery=acked(item)
            )
        producer.flush(30)
    assert not errors, errors


# -- reading outcomes --------------------------------------------------------------------
def dead_letters(env: RouterEnv) -> dict[tuple[str, int, int], list[dict[str, Any]]]:
    """(source topic, partition, offset) -> dead letters (router and fold)."""
    out: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for m in env.read(env.dlq, timeout=10):
        v = env.serde.decode(m.value()).value
        out.setdefault((v["source_topic"], v["source_partition"], v["source_offset"]), []).append(v)
    return out


def _matches(expected: dict[str, Any], letter: dict[str, Any]) -> bool:
    stages = expected.get("stage")
    if isinstance(stages, str):
        stages = [stages]
    if stages is not None and letter["stage"] not in stages:
        return False
    if expected.get("error_type", letter["error_type"]) != letter["error_type"]:
        return False
    return "reason" not in expected or bool(re.search(expected["reason"], letter["reason"]))


def test_every_kind_of_bad_input_gets_its_outcome_and_the_router_goes_on(
    router_env_factory: EnvFactory,
) -> None:
    env = router_env_factory(partners=["client-01", "client-02"], score_partners=["client-01"])
    rng = random.Random(20261203)
    record_kinds = {n: k for n, k in KINDS.items() if "input" in k}
    for name in record_kinds:  # every corpus subject may use analytics and client-01
        env.append(new_change(f"corpus-{name}", "GRANT", "analytics"))
        env.append(new_change(f"corpus-{name}", "GRANT", "partner_sharing", "client-01"))
    env.append(new_change("well-formed", "GRANT", "analytics"))
    router = env.start_router()
    fold = env.start_fold()
    before = env.browse("well-formed", 5)
    items = [build(env, n, k["input"], rng) for n, k in record_kinds.items()]
    produce_all(env, items)
    after = env.browse("well-formed", 5)

    raw_items = [i for i in items if i.topic != env.changes]
    raw_count = sum(i.copies for i in raw_items) + 10
    expected_decisions = 10 + sum(
        i.copies for i in raw_items if "decision" in KINDS[i.name]["expect"]
    )
    decisions = env.decisions_by_event(
        len({e for e in before + after})
        + len({i.event_id for i in raw_items if "decision" in KINDS[i.name]["expect"]}),
        timeout=120,
    )
    letters = _wait_letters(env, items)
    assert router.proc.poll() is None, router.tail()
    assert fold.proc.poll() is None, fold.tail()
    assert all(decisions[e]["analytics"] == "allowed" for e in before + after)

    problems: list[str] = []
    outcomes: dict[str, str] = {}
    for item in items:
        expect = KINDS[item.name]["expect"]
        got = [letters.get((item.topic, p, o), []) for p, o in item.offsets]
        problems += _check(item, expect, got, decisions, env)
        outcomes[item.name] = "; ".join(
            f"{v['stage']}/{v['error_type']}: {v['reason'][:80]}" for g in got for v in g
        ) or ("decided " + str(decisions.get(item.event_id or "", {}).get("analytics")))
    write_report("corpus", kinds=len(items), outcomes=outcomes, problems=problems)
    assert not problems, "\n".join(problems)

    # the accounting reconciles: every raw record is a decision or a router dead letter
    decision_msgs = env.read(env.decisions, timeout=10)
    router_letters = [
        v
        for g in letters.values()
        for v in g
        if v["stage"] != "fold" and v["source_topic"] != env.changes
    ]
    only_letters = sum(1 for v in router_letters if v["stage"] != "route")
    assert len(decision_msgs) + only_letters == raw_count, (
        len(decision_msgs),
        only_letters,
        raw_count,
        expected_decisions,
    )


def _wait_letters(
    env: RouterEnv, items: list[Built], timeout: float = 60.0
) -> dict[tuple[str, int, int], list[dict[str, Any]]]:
    want = {
        (i.topic, p, o)
        for i in items
        for p, o in i.offsets
        if "dead_letter" in KINDS[i.name]["expect"] or "fold" in KINDS[i.name]["expect"]
    }
    deadline = time.monotonic() + timeout
    while True:
        letters = dead_letters(env)
        if want <= set(letters) or time.monotonic() > deadline:
            return letters
        time.sleep(1.0)


def _check(
    item: Built,
    expect: dict[str, Any],
    got: list[list[dict[str, Any]]],
    decisions: dict[str, dict[str, str]],
    env: RouterEnv,
) -> list[str]:
    """What is wrong with ``item``'s outcome (empty: it is the expected one)."""
    out = []
    for letters in got:
        out += _check_router_letter(item, expect.get("dead_letter"), letters)
        if item.topic == env.changes:
            out += _check_fold_letter(item, expect.get("fold"), letters)
    if "decision" in expect:
        found = decisions.get(item.event_id or "")
        if found is None:
            out.append(f"{item.name}: no decision")
        else:
            out += [
                f"{item.name}: {sink} expected {reason}, got {found.get(sink)}"
                for sink, reason in expect["decision"].items()
                if found.get(sink) != reason
            ]
    if expect.get("folded"):
        try:
            env.consents.wait_visible(item.subject, [item.change_id or ""], timeout=30)
        except AssertionError as exc:
            out.append(f"{item.name}: not folded: {str(exc)[:200]}")
    return out


def _check_router_letter(
    item: Built, want: dict[str, Any] | None, letters: list[dict[str, Any]]
) -> list[str]:
    router = [v for v in letters if v["stage"] != "fold"]
    if want is None:
        return [f"{item.name}: unexpected dead letter {router}"] if router else []
    if len(router) != 1 or not _matches(want, router[0]):
        return [f"{item.name}: expected dead letter {want}, got {router}"]
    raw = router[0]["raw_value"] or b""
    if want.get("raw_truncated"):
        if not len(raw) <= DLQ_MAX_BYTES < len(item.value or b""):
            return [f"{item.name}: raw bytes not truncated ({len(raw)})"]
    elif router[0]["raw_value"] != item.value:
        return [f"{item.name}: the dead letter does not hold the raw bytes"]
    return []


def _check_fold_letter(
    item: Built, want: dict[str, Any] | None, letters: list[dict[str, Any]]
) -> list[str]:
    fold = [v for v in letters if v["stage"] == "fold"]
    if want is None:
        return [f"{item.name}: unexpected fold dead letter {fold}"] if fold else []
    if len(fold) != 1 or not _matches(want, fold[0]):
        return [f"{item.name}: expected fold dead letter {want}, got {fold}"]
    return []


# -- the write path ----------------------------------------------------------------------
def lying_tc_string() -> str:
    """A TC string whose vendor section declares 400 vendors and holds bits for 40."""
    bits = core_bits(TcCore(vendor_consents=frozenset(range(1, 401, 2))))
    cut = len(bits) - 360  # the bitfield's last 360 vendors are gone
    return bits_to_base64url(bits[:cut])


@pytest.mark.parametrize("name", [n for n, k in KINDS.items() if "service" in k])
def test_write_path_refuses_bad_consent_signals(
    name: str, consent_env_factory: Callable[..., Any]
) -> None:
    env = consent_env_factory()
    spec = KINDS[name]["service"]["tcf"]
    tc_string = lying_tc_string() if spec == "lying-length" else spec
    with pytest.raises(ValidationError, match=KINDS[name]["expect"]["refused"]):
        env.service.tcf(f"corpus-{name}", tc_string)


# -- policies ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n, k in KINDS.items() if "policy" in k])
def test_a_policy_the_router_cannot_enforce_stops_it_at_startup(
    name: str, router_env: RouterEnv
) -> None:
    env = router_env
    patch = KINDS[name]["policy"]
    doc = yaml.safe_load(env.policy_path.read_text())
    partner = next(s for s in doc["sinks"] if s.get("recipient"))
    if "sink_topic" in patch:
        partner["topic"] = patch["sink_topic"] + env.plan.suffix
    if patch.get("drop_recipient"):
        del partner["recipient"]
    bad = env.workdir / f"{name}.yaml"
    bad.write_text(yaml.safe_dump(doc))
    router = env.start_router(wait_ready=False, extra=["--policy", str(bad)])
    assert router.proc.wait(60) == 78, router.tail()
    log = router.log.read_text()
    assert re.search(KINDS[name]["expect"]["startup_error"], log), log[-2000:]
    assert "Traceback" not in log
