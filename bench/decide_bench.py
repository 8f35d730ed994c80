"""Decision throughput: one browsing event against a policy with 1 analytics + 38 partner sinks.

    .venv/bin/python bench/decide_bench.py [--events 2000] [--repeat 5]

Per event the router's pure work is timed: ``SourceEvent.from_record`` on the decoded dict,
``decide_all`` over the 39 sinks of the source, and ``project`` (HMAC pseudonym included) for
every allowed sink. Decoding and producing are not included (see serde.md). Scenarios:

- all allowed: the subject granted analytics and partner_sharing for all 38 recipients
  (with some history: an earlier withdrawal and re-grant, expiring grants): 39 projections;
- typical: analytics + 5 of the 38 partners granted, GPC on 10% of events;
- no consent record: the subject is unknown, 39 denials;
- all allowed, decide only: as the first, without projecting (the decision's own cost).

Each figure is the best of ``--repeat`` runs over ``--events`` distinct events. Results are
printed and written to bench/results/decide.md with the machine description.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from consentgate.consent import Timeline, apply
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod
from consentgate.policy import Policy, PseudonymKeys, SourceEvent, decide_all, parse_policy, project

RESULTS = Path(__file__).resolve().parent / "results" / "decide.md"
RECIPIENTS = [f"client-{i:02d}" for i in range(38)]
SUBJECT = "student-0042"
NOW = datetime(2025, 6, 1, tzinfo=UTC)
FIELDS = ["event_id", "event_time", "event_type", "job_id", "company_id"]


def policy() -> Policy:
    sinks: list[dict[str, Any]] = [
        {
            "name": "analytics",
            "topic": "events.browsing.analytics.v1",
            "source": "browsing",
            "purpose": "analytics",
            "fields": [*FIELDS, "page_url", "referrer", "device", "country"],
            "subject_id": "pseudonymize",
        }
    ]
    sinks += [
        {
            "name": f"partner.{r}.browsing",
            "topic": f"partner.{r}.browsing.v1",
            "source": "browsing",
            "purpose": "partner_sharing",
            "recipient": r,
            "fields": FIELDS,
            "subject_id": "pseudonymize",
            "opt_out_signals": ["gpc"],
        }
        for r in RECIPIENTS
    ]
    data = {
        "purposes": {"analytics": "site analytics", "partner_sharing": "to a named client"},
        "recipients": [
            {"id": r, "name": r.title(), "address": "1 Example St", "country": "JP"}
            for r in RECIPIENTS
        ],
        "sources": [
            {
                "name": "browsing",
                "topic": "events.browsing.raw.v1",
                "schema": "dev.consentgate.v1.BrowsingEvent",
                "signal_fields": {"gpc": "gpc"},
            }
        ],
        "sinks": sinks,
    }
    return parse_policy(yaml.safe_dump(data), origin="bench").policy


def timeline(recipients: list[str]) -> Timeline:
    """Grants with some history: every key granted 90 days ago; analytics withdrawn and
    re-granted; every other partner grant renewed with an expiry a year out."""
    start = NOW - timedelta(days=90)
    plan: list[tuple[ConsentAction, str, str | None, int, datetime | None]] = [
        (ConsentAction.GRANT, "analytics", None, 0, None),
        (ConsentAction.WITHDRAW, "analytics", None, 10, None),
        (ConsentAction.GRANT, "analytics", None, 20, None),
    ]
    for i, r in enumerate(recipients):
        plan.append((ConsentAction.GRANT, "partner_sharing", r, 1, None))
        if i % 2:
            expiry = NOW + timedelta(days=365)
            plan.append((ConsentAction.GRANT, "partner_sharing", r, 30, expiry))
    tl: Timeline | None = None
    for n, (action, purpose, recipient, day, expires_at) in enumerate(plan):
        when = start + timedelta(days=day)
        change = ConsentChange(
            change_id=f"chg-{n:04d}",
            subject_id=SUBJECT,
            action=action,
            purpose=purpose,
            recipient=recipient,
            effective_time=when,
            expires_at=expires_at,
            recorded_time=when,
            method=ConsentMethod.WEB_FORM,
            notice_version="2025-03",
        )
        tl = apply(tl, change)
    assert tl is not None
    tl.granted_at("analytics", None, NOW)  # derive the intervals before timing
    return tl


def events(count: int, gpc_share: float, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "event_id": uuid.UUID(int=rng.getrandbits(128), version=4),
            "subject_id": SUBJECT,
            "event_time": NOW - timedelta(seconds=rng.randrange(1, 3600)),
            "session_id": f"sess-{rng.getrandbits(48):012x}",
            "event_type": "JOB_VIEW",
            "page_url": f"https://jobs.example/job/{rng.randrange(10**6)}",
            "job_id": f"job-{rng.randrange(10**5)}",
            "company_id": f"co-{rng.randrange(5000)}",
            "search_query": None,
            "referrer": None,
            "device": {"user_agent": "Mozilla/5.0", "device_type": "desktop", "os": "linux"},
            "ip_address": f"203.0.113.{rng.randrange(256)}",
            "country": "JP",
            "gpc": rng.random() < gpc_share,
        }
        for _ in range(count)
    ]


def route_fn(
    pol: Policy, tl: Timeline | None, keys: PseudonymKeys, *, projecting: bool
) -> Callable[[dict[str, Any]], int]:
    source = pol.source("browsing")
    sinks = pol.sinks_for("browsing")
    defaults = pol.defaults

    def route(record: dict[str, Any]) -> int:
        event = SourceEvent.from_record(source, record)
        allowed = 0
        for sink, decision in decide_all(event, tl, sinks, NOW, defaults):
            if decision.allowed and decision.evidence is not None:
                allowed += 1
                if projecting:
                    project(event, sink, decision.evidence, keys)
        return allowed

    return route


def best_us(fn: Callable[[dict[str, Any]], int], items: list[dict[str, Any]], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def machine() -> str:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    impl = platform.python_implementation()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"CPU: {model}; nproc: {os.cpu_count()}; load average at start: {load}\n"
        f"- Python {platform.python_version()} ({impl})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    pol = policy()
    sinks = len(pol.sinks_for("browsing"))
    keys = PseudonymKeys(master_key=SecretStr("bench-master-key-0123456789abcdef"))
    everyone = timeline(RECIPIENTS)
    some = timeline(RECIPIENTS[:5])
    scenarios = [
        ("all allowed", route_fn(pol, everyone, keys, projecting=True), events(args.events, 0)),
        ("typical (6 of 39 granted, 10% GPC)", route_fn(pol, some, keys, projecting=True),
         events(args.events, 0.1)),
        ("no consent record", route_fn(pol, None, keys, projecting=True), events(args.events, 0)),
        ("all allowed, decide only", route_fn(pol, everyone, keys, projecting=False),
         events(args.events, 0)),
    ]  # fmt: skip

    rows = []
    for name, fn, items in scenarios:
        allowed = sum(fn(item) for item in items) / len(items)
        us = best_us(fn, items, args.repeat)
        rows.append(
            f"| {name} | {1e6 / us:,.0f} | {sinks * 1e6 / us:,.0f} | {us:,.1f} | {allowed:.1f} |"
        )
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join(
        [
            f"# Decision benchmark: 1 event x {sinks} sinks (1 analytics + 38 partners)",
            "",
            f"- date: {now}",
            f"- {machine()}",
            "",
            f"`python bench/decide_bench.py`: {args.events} distinct events, best of "
            f"{args.repeat} runs. Per event: SourceEvent.from_record + decide_all over {sinks} "
            "sinks + project (HMAC-SHA256 pseudonym) per allowed sink; no decoding/producing.",
            "",
            "| scenario | events/s | decisions/s | µs/event | allowed sinks/event |",
            "|---|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
