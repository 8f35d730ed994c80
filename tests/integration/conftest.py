"""Fixtures for router tests: a RouterEnv with its own topics, cleaned up afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from consentgate_dev.demo.policygen import PolicyPlan, policy_yaml
from tests.integration.consent_harness import ConsentEnv
from tests.integration.router_harness import PARTITIONS, RouterEnv

EnvFactory = Callable[..., RouterEnv]


@pytest.fixture
def router_env_factory(
    kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path: Path
) -> Iterator[EnvFactory]:
    envs: list[RouterEnv] = []

    def make(
        partners: list[str] | None = None,
        score_partners: list[str] | None = None,
        partitions: int = PARTITIONS,
        **plan_extra: object,
    ) -> RouterEnv:
        plan = PolicyPlan(
            partners=partners or ["client-01", "client-02"],
            score_partners=score_partners if score_partners is not None else ["client-01"],
            suffix=f".t{uuid.uuid4().hex[:8]}",
            **plan_extra,  # type: ignore[arg-type]
        )
        workdir = tmp_path / f"env{len(envs)}"
        workdir.mkdir()
        env = RouterEnv(kafka_bootstrap, kafka_admin, workdir, plan, partitions)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.stop_all()
        env.delete_topics()


@pytest.fixture
def router_env(router_env_factory: EnvFactory) -> RouterEnv:
    return router_env_factory()


ConsentEnvFactory = Callable[..., ConsentEnv]


@pytest.fixture
def consent_env_factory(
    kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path: Path
) -> Iterator[ConsentEnvFactory]:
    """Consent topics of their own (suffixed), a policy, the write path; folds on demand."""
    envs: list[ConsentEnv] = []

    def make(partitions: int = PARTITIONS, **options: Any) -> ConsentEnv:
        plan = PolicyPlan(
            partners=["client-01", "client-02"],
            score_partners=["client-01"],
            suffix=f".c{uuid.uuid4().hex[:8]}",
        )
        workdir = tmp_path / f"consent{len(envs)}"
        workdir.mkdir()
        policy_path = workdir / "policy.yaml"
        policy_path.write_text(policy_yaml(plan))
        env = ConsentEnv(
            kafka_bootstrap,
            kafka_admin,
            workdir,
            policy_path,
            changes=plan.changes_topic,
            state=plan.state_topic,
            dlq=plan.dlq_topic,
            partitions=partitions,
            **options,
        )
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()
        env.delete_topics()


@pytest.fixture
def consent_env(consent_env_factory: ConsentEnvFactory) -> ConsentEnv:
    return consent_env_factory()


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[[str, object], None]:
    """pytest's ``record_property``. Under ``--junitxml`` with the xunit2 family (no
    per-test properties there; its warning is an error in this suite) the properties go to
    the same place, ``node.user_properties``, without the warning."""
    xunit2 = request.config.getini("junit_family") == "xunit2"
    if getattr(request.config.option, "xmlpath", None) and xunit2:
        return lambda name, value: request.node.user_properties.append((name, value))
    recorder: Callable[[str, object], None] = request.getfixturevalue("record_property")
    return recorder
