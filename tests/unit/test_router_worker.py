"""The router's wiring, without a broker: the faust traps' workarounds are in place."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from consentgate.policy import PseudonymKeys
from consentgate.router.app import RouterAppConfig
from consentgate.router.worker import build_worker
from tests.unit.policy_fixtures import POLICY

pytestmark = pytest.mark.unit

KEYS = PseudonymKeys(master_key=SecretStr("unit-test-master-key-0123456789"))


def test_every_agent_runs_with_concurrency_one_at_least_once() -> None:
    worker = build_worker(RouterAppConfig(bootstrap="127.0.0.1:1", partitions=3), POLICY, keys=KEYS)
    app = worker.app
    assert app.conf.processing_guarantee.value == "at_least_once"  # not exactly_once (#177)
    assert not app.conf.web_tables_enabled  # consent data never served over HTTP
    agents = list(app.agents.values())
    assert agents and all(agent.concurrency == 1 for agent in agents)  # faust #606
    subscribed = {t for agent in agents for t in agent.channel.topics}
    assert subscribed == {s.topic for s in POLICY.sources} | {"consent.changes.v1"}
    table = worker.router_app.consent.table
    assert table.recovery_buffer_size == 1  # live consent changes applied one by one


def test_missing_pseudonym_key_refuses_to_start() -> None:
    from consentgate.errors import ConfigError  # noqa: PLC0415

    with pytest.raises(ConfigError, match="pseudonym key"):
        build_worker(RouterAppConfig(bootstrap="127.0.0.1:1"), POLICY, keys=PseudonymKeys())
