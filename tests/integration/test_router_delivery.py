"""A sink that refuses a record stops the router before it commits; restarted, it delivers."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported implicitly
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from consentgate.router.run import EXIT_FATAL
from tests.integration.router_harness import RouterEnv

pytestmark = pytest.mark.integration


def _set_max_message_bytes(admin: AdminClient, topic: str, value: int) -> None:
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(
                "max.message.bytes", str(value), incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def test_refused_sink_record_stops_the_router_and_nothing_is_committed_past_it(
    router_env: RouterEnv,
) -> None:
    env = router_env
    sink = env.plan.analytics_topic
    env.consent("lee", "GRANT", "analytics")
    _set_max_message_bytes(env.admin, sink, 64)  # every sink batch is too large: refused
    first = env.start_router()
    (event,) = env.browse("lee")
    assert first.proc.wait(120) == EXIT_FATAL
    log = first.log.read_text()
    assert "stops without committing" in log
    assert "too large" in log.lower()
    assert env.sink_event_ids(sink, timeout=5) == []

    _set_max_message_bytes(env.admin, sink, 1_048_588)  # the sink is repaired
    env.start_router()  # same group: starts from the last commit, before the event
    delivered: list[str] = []
    for _ in range(20):  # the old static member's session (10 s) must expire first
        delivered = env.sink_event_ids(sink, timeout=5)
        if delivered:
            break
    assert set(delivered) == {event}
