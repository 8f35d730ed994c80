"""The delivery guard: a failed or cancelled output is found before the next commit."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import pytest

from consentgate.router import delivery
from consentgate.router.delivery import EXIT_DELIVERY_FAILED, DeliveryGuard

pytestmark = pytest.mark.unit


def test_successful_deliveries_leave_no_failure() -> None:
    async def scenario() -> tuple[str | None, int]:
        guard = DeliveryGuard()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(3)]
        for f in futures:
            guard.watch("sink", f)
        for f in futures:
            f.set_result("metadata")
        await asyncio.sleep(0)
        return guard.check(), guard.pending

    assert asyncio.run(scenario()) == (None, 0)


def test_failure_seen_through_the_callback() -> None:
    async def scenario() -> DeliveryGuard:
        guard = DeliveryGuard()
        ok: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        bad: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        guard.watch("partner.client-01.browsing.v1", ok)
        guard.watch("partner.client-01.browsing.v1", bad)
        ok.set_result(None)
        bad.set_exception(RuntimeError("MessageSizeTooLargeError"))
        await asyncio.sleep(0)  # callbacks run
        return guard

    guard = asyncio.run(scenario())
    assert guard.check() is not None
    assert "partner.client-01.browsing.v1" in (guard.failure or "")
    assert "MessageSizeTooLargeError" in (guard.failure or "")
    assert guard.failed == 1


def test_failure_seen_before_its_callback_ran() -> None:
    """faust's flush may resume the commit before the futures' callbacks: check() looks."""

    async def scenario() -> str | None:
        guard = DeliveryGuard()
        bad: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        guard.watch("sink", bad)
        bad.set_exception(RuntimeError("broker said no"))
        return guard.check()  # no await in between: the callback is still queued

    failure = asyncio.run(scenario())
    assert failure is not None and "broker said no" in failure


def test_cancelled_delivery_is_a_failure() -> None:
    async def scenario() -> str | None:
        guard = DeliveryGuard()
        f: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        guard.watch("sink", f)
        f.cancel()
        await asyncio.sleep(0)
        return guard.check()

    assert "cancelled" in (asyncio.run(scenario()) or "")


def test_fail_stop_exits_with_its_code(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", fake_exit)
    with caplog.at_level(logging.CRITICAL), pytest.raises(SystemExit):
        delivery.fail_stop("record for sink not delivered")
    assert codes == [EXIT_DELIVERY_FAILED]
    assert "stopping without committing" in caplog.text
