"""``consentgate retract`` on the real broker: one subject's data retracted from every sink
under every key it is held by: the current key, the provision ledger's keys and the keys of
the subject's records, also after a pseudonym key rotation."""

from __future__ import annotations

import json
from collections import Counter

import pydantic
import pytest

from consentgate.policy import PseudonymKeys, load_policy
from tests.integration.conftest import EnvFactory
from tests.integration.test_replay import KEYS, ROTATED, held, run_cli

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_retract_finds_the_old_and_the_current_keys(router_env_factory: EnvFactory) -> None:
    env = router_env_factory(partners=["client-01"])
    env.consent("uma", "GRANT", "analytics")
    env.consent("uma", "GRANT", "partner_sharing", "client-01")
    env.consent("vic", "GRANT", "analytics")
    router = env.start_router()
    env.browse("uma", 2)
    env.browse("vic", 1)
    env.decisions_by_event(3)
    router.stop()
    policy = load_policy(env.policy_path)
    rotated = PseudonymKeys({k: pydantic.SecretStr(v) for k, v in ROTATED.items()})
    partner = env.plan.partner_topic("client-01")
    analytics = env.plan.analytics_topic
    old_partner = KEYS.pseudonym("client-01", "uma").encode()
    old_analytics = KEYS.pseudonym("_first_party", "uma").encode()
    args = ["retract", "--subject", "uma", "--reason", "erasure request 42"]
    args += ["--policy", str(env.policy_path), "--json"]

    dry = run_cli(env, *args, "--dry-run", keys=ROTATED)
    assert dry.returncode == 0, dry.stderr[-3000:]
    found = {
        (r["sink"], r["key"].encode()): r["found_by"] for r in json.loads(dry.stdout)["retractions"]
    }
    assert found == {
        ("analytics", old_analytics): ["records"],  # first-party records name the event
        ("analytics", rotated.pseudonym("_first_party", "uma").encode()): ["current"],
        ("partner.client-01.browsing", old_partner): ["ledger"],  # its event ids are scoped
        ("partner.client-01.browsing", rotated.pseudonym("client-01", "uma").encode()): ["current"],
        ("partner.client-01.scores", rotated.pseudonym("client-01", "uma").encode()): ["current"],
    }
    for topic in env.plan.sink_topics():
        assert env.retractions(topic) == []  # a dry run writes nothing

    done = run_cli(env, *args, keys=ROTATED)
    assert done.returncode == 0, done.stderr[-3000:]
    written = Counter()
    for topic in env.plan.sink_topics():
        for key, headers in env.retractions(topic):
            written[topic, key] += 1
            assert headers["cg-retraction"] == b"manual"
            assert headers["cg-reason"] == b"erasure request 42"
            assert headers["cg-policy-version"] == policy.version.encode()
            assert headers["cg-purpose"] in {b"analytics", b"partner_sharing"}
    assert written == Counter(
        {(policy.sink(sink).topic, key): 1 for sink, key in found}
    )  # one per (sink, key), in one transaction: all visible read_committed
    assert old_partner in {k for k, _, _ in held(env, partner)}  # the data it retracts
    assert {k for k, _ in env.retractions(analytics)} == {
        old_analytics,
        rotated.pseudonym("_first_party", "uma").encode(),
    }  # vic untouched

    only = run_cli(env, *args, "--sinks", "analytics", "--dry-run", keys=ROTATED)
    assert {r["sink"] for r in json.loads(only.stdout)["retractions"]} == {"analytics"}
    bad = run_cli(env, *args, "--sinks", "nope", keys=ROTATED)
    assert bad.returncode == 2
    assert "no such sink: nope" in bad.stderr
