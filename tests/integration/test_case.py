"""The case, end to end: 74,878 students, 38 client companies, 7,983 of them never consented
to partner sharing. After the run an independent audit (not the router's counters) must find
no partner record without that recipient's grant, and every raw event accounted for."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

import pytest

from consentgate.ops.audit import AuditTopics, run_audit
from consentgate.ops.reader import read_topic
from consentgate.policy import load_policy
from consentgate.policy.pseudonym import scoped_event_id
from consentgate.settings import Settings
from consentgate_dev.demo.case import CaseSpec, produce_events, write_consent
from consentgate_dev.demo.policygen import partner_ids
from tests.integration.conftest import EnvFactory

pytestmark = pytest.mark.integration

PARTNERS = partner_ids(38)


@pytest.mark.timeout(2400)  # 245k consent changes through the fold, then 82k events: minutes
def test_the_case_end_to_end(router_env_factory: EnvFactory) -> None:
    env = router_env_factory(partners=PARTNERS, score_partners=PARTNERS[:3])
    spec = CaseSpec(partners=PARTNERS)
    settings = Settings()
    rng = random.Random(spec.seed)
    env.start_fold()
    data = write_consent(spec, env.consents.service, rng)
    env.consents.settle(timeout=600)
    produce_events(
        spec,
        data,
        rng,
        settings.producer_config(env.bootstrap),
        after=datetime.now(UTC),
        browsing_topic=env.plan.browsing_topic,
        scores_topic=env.plan.scores_topic,
        serde=env.serde,
    )
    assert len(data.never_shared) == 7_983
    started = time.monotonic()
    router = env.start_router(consent_wait=10.0)
    loaded = time.monotonic() - started
    env.decisions_by_event(data.events, timeout=1200)
    elapsed = time.monotonic() - started
    print(
        f"\ncase: consent view ready in {loaded:.1f} s; {data.events:,} events decided in "
        f"{elapsed:.1f} s ({data.events / elapsed:,.0f} events/s incl. startup)"
    )

    policy = load_policy(env.policy_path)
    report = run_audit(
        settings.kafka_config(env.bootstrap),
        policy,
        env.serde,
        AuditTopics(
            changes=env.changes,
            decisions=env.decisions,
            dead_letters=env.dlq,
            provisions=env.provisions,
        ),
        keys=env.keys,
    )
    print(report.render())
    assert report.ok, report.render()
    assert report.read["raw_records"] == data.events
    assert report.read["decisions"] == data.events  # every event: one decision, every sink
    assert sum(report.sinks[env.plan.partner_topic(p)].records for p in PARTNERS) > 0

    # and explicitly: none of the 7,983 appears in any partner topic
    conf = settings.kafka_config(env.bootstrap)
    subject_of = {}  # raw event id -> subject
    for msg in read_topic(conf, env.plan.browsing_topic):
        subject_of[str(env.serde.decode(msg.value()).value["event_id"])] = msg.key().decode()
    leaked = 0
    for p in PARTNERS:  # partner evidence names the event by its recipient-scoped id
        key = env.keys.key_for(p)
        scoped = {str(scoped_event_id(key, e)): s for e, s in subject_of.items()}
        for msg in read_topic(conf, env.plan.partner_topic(p)):
            ev = env.serde.decode(msg.value()).value["evidence"]
            assert ev["source_partition"] is None
            if scoped[str(ev["event_id"])] in data.never_shared:
                leaked += 1
    assert leaked == 0
    assert router.proc.poll() is None
