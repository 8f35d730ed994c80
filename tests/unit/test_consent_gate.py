"""The gate adapter (polling task + admit) with a fake end-offset source, no broker."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence

import pytest

from consentgate.router.consent_gate import ConsentGate
from consentgate.router.gate import GateVerdict

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


class FakeEnds:
    def __init__(self, ends: dict[int, int]) -> None:
        self.ends = ends
        self.calls = 0
        self.fail = False

    def end_offsets(self, topic: str, partitions: Sequence[int]) -> Mapping[int, int]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("broker down")
        return {p: self.ends.get(p, 0) for p in partitions}


async def running(gate: ConsentGate) -> asyncio.Task[None]:
    task = asyncio.create_task(gate.run())
    await asyncio.sleep(0.05)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_admits_once_the_view_catches_up() -> None:
    source = FakeEnds({0: 5})
    gate = ConsentGate(source, topic="c", partitions=2, max_wait=2.0, poll_interval=10.0)
    gate.on_recovered({0: 3, 1: 0})
    task = await running(gate)
    try:
        admit = asyncio.create_task(gate.admit(0, time.time()))
        await asyncio.sleep(0.1)
        assert not admit.done()  # view at 3, end 5
        gate.on_applied(0, 5)
        assert await asyncio.wait_for(admit, 1.0) is GateVerdict.READY
        assert await gate.admit(1, time.time()) is GateVerdict.READY  # empty partition
    finally:
        await stop(task)


async def test_an_event_newer_than_every_observation_triggers_a_poll() -> None:
    source = FakeEnds({0: 0})
    gate = ConsentGate(source, topic="c", partitions=1, max_wait=2.0, poll_interval=10.0)
    gate.on_recovered({0: 0})
    task = await running(gate)
    try:
        calls = source.calls
        started = time.monotonic()
        assert await gate.admit(0, time.time()) is GateVerdict.READY
        assert time.monotonic() - started < 1.0  # not the 10 s poll interval
        assert source.calls > calls
    finally:
        await stop(task)


async def test_stale_after_max_wait_then_fail_fast() -> None:
    source = FakeEnds({0: 9})
    gate = ConsentGate(source, topic="c", partitions=1, max_wait=0.3, poll_interval=0.05)
    gate.on_recovered({0: 4})
    task = await running(gate)
    try:
        started = time.monotonic()
        assert await gate.admit(0, time.time()) is GateVerdict.STALE
        assert time.monotonic() - started >= 0.3
        started = time.monotonic()
        assert await gate.admit(0, time.time()) is GateVerdict.STALE
        assert time.monotonic() - started < 0.1
    finally:
        await stop(task)


async def test_revoked_partition_is_not_admitted() -> None:
    source = FakeEnds({0: 2})
    gate = ConsentGate(source, topic="c", partitions=1, max_wait=0.2, poll_interval=0.05)
    gate.on_recovered({0: 2})
    task = await running(gate)
    try:
        gate.on_revoked({0})
        assert await gate.admit(0, time.time()) is GateVerdict.STALE
    finally:
        await stop(task)


async def test_no_end_offsets_means_stale() -> None:
    source = FakeEnds({0: 0})
    source.fail = True
    gate = ConsentGate(source, topic="c", partitions=1, max_wait=0.2, poll_interval=0.05)
    gate.on_recovered({0: 0})
    task = await running(gate)
    try:
        assert await gate.admit(0, time.time()) is GateVerdict.STALE
        assert gate.poll_errors > 0
    finally:
        await stop(task)


async def test_warm_up_asks_the_source_once_in_the_background() -> None:
    calls: list[tuple[str, list[int]]] = []
    asked = threading.Event()

    class Source:
        def end_offsets(self, topic: str, partitions: Sequence[int]) -> Mapping[int, int]:
            calls.append((topic, list(partitions)))
            asked.set()
            return {p: 0 for p in partitions}

    gate = ConsentGate(Source(), topic="c", partitions=2, max_wait=1.0)
    gate.warm_up()
    gate.warm_up()  # every assignment calls it; one warm-up is enough
    assert await asyncio.to_thread(asked.wait, 5)
    await asyncio.sleep(0.05)
    assert calls == [("c", [0, 1])]
