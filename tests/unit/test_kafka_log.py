"""librdkafka's self-resolving retries are DEBUG lines; its other warnings keep their level."""

from __future__ import annotations

import logging

import pytest

from consentgate.kafka_log import librdkafka_logger

pytestmark = pytest.mark.unit

GETPID = (
    "GETPID [rdkafka#producer-4] [thrd:main]: Failed to acquire idempotence PID from broker "
    "127.0.0.1:29392/1: Broker: Coordinator load in progress: retrying"
)


def test_the_coordinator_loading_retry_is_not_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="librdkafka"):
        librdkafka_logger().warning(GETPID)
        librdkafka_logger().warning("FAIL [rdkafka#consumer-1]: Connection refused")
    assert [r.getMessage() for r in caplog.records] == [
        "FAIL [rdkafka#consumer-1]: Connection refused"
    ]
    assert caplog.records[0].levelno == logging.WARNING
