"""The router's pure core per event: ``Router.parse`` + ``Router.timeline`` + ``Router.plan``.

    .venv/bin/python bench/core_bench.py [--subjects 2000] [--events-per-subject 5]
                                         [--repeat 7] [--baseline 71a17d9]

The case-like workload of bench/router_bench.py, without Kafka: the policy of
``consentgate_dev.demo.policygen`` (1 analytics + 38 partner browsing sinks + 3 partner score
sinks), every subject granted analytics and 1 to 4 partners 30 days ago (~3.5 allowed sinks
per event), GPC on 5% of events, each subject's events consecutive (as the case generator
produces them, keyed by subject), event times up to 10 minutes before ``now``, ``now``
advancing 100 µs per event. Inputs are bytes as consumed: the raw event and the subject's
consent record from the view.

Implementations, each timed on a fresh ``Router`` (cold caches, empty provision memory):

- ``baseline``: ``consentgate/router/plan.py`` as of ``--baseline`` (a git revision), loaded
  from git into a private module: the code before the fast path, measured in the same run;
- ``uncached``: today's ``Router.plan_uncached`` (no decision, pseudonym or record caches;
  ``remember=True``, so that it writes each provision once, as the others do);
- ``current``: today's ``Router.plan``.

Before timing, every implementation's outputs are compared with the baseline's, record by
record (topic, key, value bytes, headers): a difference is an error, not a number. Each
figure is the best of ``--repeat`` passes; the per-stage columns come from the best pass.
Results are printed and written to bench/results/core.md with the machine description.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import SecretStr

from consentgate.consent.timeline import Timeline, apply
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod
from consentgate.policy import Policy, PseudonymKeys, parse_policy
from consentgate.router import plan as current_plan
from consentgate.serde import Serde
from consentgate_dev.demo.policygen import PolicyPlan, partner_ids, policy_yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decide_bench import machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "core.md"
PLAN_PATH = "services/consentgate/router/plan.py"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EVENT_TYPES = ("PAGE_VIEW", "SEARCH", "JOB_VIEW", "COMPANY_VIEW", "BOOKMARK", "APPLY")


@dataclass(frozen=True)
class Item:
    rec: Any  # a RawRecord of the implementation under test (built per implementation)
    consent: bytes
    now: datetime


@dataclass(frozen=True)
class Workload:
    policy: Policy
    serde: Serde
    keys: PseudonymKeys
    topic: str
    events: list[tuple[bytes, bytes, int, bytes, datetime]]  # key, value, offset, consent, now


def workload(subjects: int, per_subject: int, seed: int = 2019) -> Workload:
    rng = random.Random(seed)
    plan = PolicyPlan(partner_ids(38), partner_ids(38)[:3])
    pol = parse_policy(policy_yaml(plan), origin="core-bench").policy
    serde = Serde()
    keys = PseudonymKeys(master_key=SecretStr("bench-master-key-0123456789abcdef"))
    granted = NOW - timedelta(days=30)
    events = []
    offset = 0
    for i in range(subjects):
        subject = f"student-{i:05d}"
        keys_granted: list[tuple[str, str | None]] = [("analytics", None)]
        keys_granted += [
            ("partner_sharing", p) for p in rng.sample(plan.partners, rng.randint(1, 4))
        ]
        tl: Timeline | None = None
        for purpose, recipient in keys_granted:
            change = ConsentChange(
                change_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{subject}/{purpose}/{recipient}")),
                subject_id=subject,
                action=ConsentAction.GRANT,
                purpose=purpose,
                recipient=recipient,
                effective_time=granted,
                recorded_time=granted,
                notice_version="2019-03",
                method=ConsentMethod.WEB_FORM,
            )
            tl = apply(tl, change)
        assert tl is not None
        consent = serde.encode(tl.record)
        for _ in range(per_subject):
            now = NOW + timedelta(microseconds=100 * offset)
            datum = {
                "event_id": uuid.UUID(int=rng.getrandbits(128), version=4),
                "subject_id": subject,
                "event_time": now - timedelta(seconds=rng.randint(1, 600)),
                "event_type": rng.choice(EVENT_TYPES),
                "job_id": f"job-{rng.randint(1, 5000)}",
                "company_id": rng.choice(plan.partners),
                "page_url": f"https://jobs.example/jobs/{rng.randint(1, 5000)}",
                "country": "JP",
                "gpc": rng.random() < 0.05,
            }
            value = serde.encode(datum, "BrowsingEvent")
            events.append((subject.encode(), value, offset, consent, now))
            offset += 1
    return Workload(pol, serde, keys, plan.browsing_topic, events)


def baseline_module(revision: str) -> ModuleType:
    """plan.py as of ``revision``, imported as a private module."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:{PLAN_PATH}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="core-bench-")) / "baseline_plan.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("consentgate_baseline_plan", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


Runner = Callable[[list[Item]], tuple[list[Any], float, float, float]]


def runner(module: ModuleType, wl: Workload, *, uncached: bool = False) -> Runner:
    """Runs a fresh Router of ``module`` over items: (plans, parse s, timeline s, plan s)."""

    def run(items: list[Item]) -> tuple[list[Any], float, float, float]:
        router = module.Router(wl.policy, wl.serde, wl.keys)
        plan = functools.partial(router.plan_uncached, remember=True) if uncached else router.plan
        parse, timeline = router.parse, router.timeline
        clock = time.perf_counter
        plans = []
        t_parse = t_timeline = t_plan = 0.0
        for item in items:
            t0 = clock()
            parsed = parse(item.rec, item.now)
            t1 = clock()
            tl = timeline(item.consent)
            t2 = clock()
            plans.append(plan(parsed, tl, item.now))
            t3 = clock()
            t_parse += t1 - t0
            t_timeline += t2 - t1
            t_plan += t3 - t2
        return plans, t_parse, t_timeline, t_plan

    return run


def items_for(module: ModuleType, wl: Workload) -> list[Item]:
    return [
        Item(module.RawRecord(wl.topic, 0, offset, key, value), consent, now)
        for key, value, offset, consent, now in wl.events
    ]


def outputs(plans: list[Any]) -> list[tuple[Any, ...]]:
    return [tuple((o.topic, o.key, o.value, o.headers) for o in p.outputs) for p in plans]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--events-per-subject", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--baseline", default="71a17d9", help="git revision of the old core")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    wl = workload(args.subjects, args.events_per_subject)
    old = baseline_module(args.baseline)
    impls = [
        ("baseline", old, runner(old, wl)),
        ("uncached", current_plan, runner(current_plan, wl, uncached=True)),
        ("current", current_plan, runner(current_plan, wl)),
    ]
    inputs = {id(m): items_for(m, wl) for _, m, _ in impls}
    reference = outputs(impls[0][2](inputs[id(old)])[0])
    per_event = {}
    allowed = 0.0
    for name, module, run in impls:
        plans = run(inputs[id(module)])[0]
        if outputs(plans) != reference:
            bad = next(
                i for i, (a, b) in enumerate(zip(outputs(plans), reference, strict=True)) if a != b
            )
            raise SystemExit(f"{name}: outputs differ from the baseline at event {bad}")
        allowed = sum(sum(d.allowed for _, d in p.decisions) for p in plans) / len(plans)
    n = len(wl.events)
    best: dict[str, tuple[float, float, float, float]] = {}
    for _ in range(args.repeat):  # interleaved, so that a noisy moment hits all alike
        for name, module, run in impls:
            _, parse, timeline, plan = run(inputs[id(module)])
            total = parse + timeline + plan
            if name not in best or total < best[name][0]:
                best[name] = (total, parse, timeline, plan)
    for name, (total, parse, timeline, plan) in best.items():
        per_event[name] = tuple(x / n * 1e6 for x in (total, parse, timeline, plan))
    base = per_event["baseline"][0]
    rows = [
        f"| {name} | {t:,.1f} | {p:,.1f} | {tl:,.1f} | {pl:,.1f} | {base / t:.2f}x |"
        for name, (t, p, tl, pl) in per_event.items()
    ]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join(
        [
            "# Router core: parse + timeline + plan per event (case-like workload)",
            "",
            f"- date: {stamp}",
            f"- {machine()}",
            "",
            f"`python bench/core_bench.py --subjects {args.subjects} --events-per-subject "
            f"{args.events_per_subject} --repeat {args.repeat} --baseline {args.baseline}`: "
            f"{n:,} events ({args.subjects:,} subjects x {args.events_per_subject}, "
            f"consecutive per subject), {allowed:.2f} allowed sinks per event, policy of "
            f"{len(wl.policy.sinks)} sinks ({len(wl.policy.sinks_for('browsing'))} fed by "
            "browsing). Outputs of every row are byte-identical to the baseline's. Best of "
            f"{args.repeat} interleaved passes, each on a fresh Router; µs per event.",
            "",
            "| implementation | total µs | parse | timeline | plan | vs baseline |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
