"""Fixtures for router tests: a RouterEnv with its own topics, cleaned up afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from consentgate.demo.policygen import PolicyPlan
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
