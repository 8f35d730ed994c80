"""The router app factory and the consent view, without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from consentgate.router.app import RouterAppConfig, create_router, static_member_id
from consentgate.router.consent_view import ConsentLookup, ReadOnlyViewError

pytestmark = pytest.mark.unit


@pytest.fixture
def config(tmp_path: Path) -> RouterAppConfig:
    return RouterAppConfig(
        bootstrap="127.0.0.1:1,127.0.0.1:2",
        app_id="unit-router",
        consent_topic="consent.state.v1",
        partitions=6,
        instance_id="w-1",
        web_port=6070,
        datadir=tmp_path,
    )


def test_app_settings(config: RouterAppConfig) -> None:
    conf = create_router(config).app.conf
    assert [str(url) for url in conf.broker] == ["kafka://127.0.0.1:1", "kafka://127.0.0.1:2"]
    assert conf.processing_guarantee.value == "at_least_once"
    assert conf.topic_partitions == 6
    assert conf.web_tables_enabled is False
    assert conf.web_router_enabled is False
    assert conf.topic_allow_declare is False
    assert conf.table_standby_replicas == 0
    assert conf.consumer_auto_offset_reset == "earliest"
    assert conf.consumer_group_instance_id == "w-1.127.0.0.1.6070"


def test_static_member_id_is_bound_to_the_url_and_kafka_safe() -> None:
    assert static_member_id("w", "host", 1) != static_member_id("w", "host", 2)
    assert static_member_id("w 1", "a:b/c", 6066) == "w_1.a_b_c.6066"


def test_consent_table_reads_the_external_topic_as_raw_bytes(config: RouterAppConfig) -> None:
    router = create_router(config)
    table = router.consent.table
    assert table.changelog_topic_name == "consent.state.v1"
    assert table.recovery_buffer_size == 1
    assert table.key_serializer == "raw"
    assert table.value_serializer == "raw"
    assert router.consent.topic.allow_empty is True
    assert router.consent.topic.acks is False  # no offsets committed for consent.state


def test_view_refuses_writes(config: RouterAppConfig) -> None:
    table = create_router(config).consent.table
    with pytest.raises(ReadOnlyViewError):
        table[b"subject"] = b"forged consent"
    with pytest.raises(ReadOnlyViewError):
        del table[b"subject"]
    with pytest.raises(ReadOnlyViewError):
        table.clear()
    assert b"subject" not in table.data


def test_lookup_present_erased_missing(config: RouterAppConfig) -> None:
    view = create_router(config).consent
    view.table.data[b"a"] = b"timeline"  # seeding the store directly, as faust's tests do
    view.table.erased[3] = {b"gone"}
    assert view.lookup("a") == ConsentLookup("present", b"timeline")
    assert view.lookup(b"gone") == ConsentLookup("erased")
    assert view.lookup("nobody") == ConsentLookup("missing")
