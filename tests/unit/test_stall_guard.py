"""The router's stall guard: a blocking call past its limit stops the process; others do not."""

from __future__ import annotations

import threading
import time

import pytest

from consentgate.router.stall import StallGuard

pytestmark = pytest.mark.unit


def _guard(limit: float) -> tuple[StallGuard, list[str], threading.Event]:
    stalled: list[str] = []
    fired = threading.Event()

    def on_stall(name: str, took: float) -> None:
        assert took > limit
        stalled.append(name)
        fired.set()

    return StallGuard(limit, on_stall=on_stall, tick=0.01), stalled, fired


def test_a_call_past_its_limit_is_reported_by_name() -> None:
    guard, stalled, fired = _guard(0.05)
    guard.start()
    try:
        with guard.call("send_offsets_to_transaction"):
            assert fired.wait(30), "the guard never fired"
    finally:
        guard.stop()
    assert stalled == ["send_offsets_to_transaction"]


def test_calls_within_the_limit_and_the_time_between_calls_are_not_stalls() -> None:
    guard, stalled, _ = _guard(0.5)
    guard.start()
    try:
        for _ in range(5):
            with guard.call("commit_transaction"):
                pass
        time.sleep(1.5)  # idle past the limit: no call is open
    finally:
        guard.stop()
    assert stalled == []
