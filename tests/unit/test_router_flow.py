"""Flow control: a resume() while flowing keeps queued records; after a suspension it clears."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from consentgate.router.app import RouterAppConfig, create_app
from consentgate.router.flow import KeepCurrentGeneration

pytestmark = pytest.mark.unit


def _queue(flow: FlowControlEvent, *items: int) -> FlowControlQueue[int]:
    queue: FlowControlQueue[int] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    for item in items:
        queue.put_nowait(item)
    return queue


def test_faust_default_clears_queued_records_on_every_resume() -> None:
    """The trap itself: mode's FlowControlEvent drops records even when flow never stopped."""
    flow = FlowControlEvent()
    flow.resume()
    queue = _queue(flow, 1, 2, 3)
    flow.resume()  # faust's recovery does this after resuming the stream partitions
    assert queue.qsize() == 0


def test_resume_while_flowing_keeps_queued_records() -> None:
    flow = KeepCurrentGeneration()
    flow.resume()
    queue = _queue(flow, 1, 2, 3)
    flow.resume()
    flow.resume()
    assert flow.is_active()
    assert [queue.get_nowait() for _ in range(3)] == [1, 2, 3]


def test_resume_after_a_suspension_clears_the_previous_generation() -> None:
    flow = KeepCurrentGeneration()
    flow.resume()
    queue = _queue(flow, 1, 2)
    flow.suspend()  # a rebalance: these records are re-read from committed offsets
    assert not flow.is_active()
    flow.resume()
    assert flow.is_active()
    assert queue.qsize() == 0


def test_starts_suspended_and_acquire_waits_for_resume() -> None:
    async def scenario() -> list[str]:
        flow = KeepCurrentGeneration()
        seen: list[str] = []

        async def producer() -> None:
            await flow.acquire()
            seen.append("acquired")

        task = asyncio.ensure_future(producer())
        await asyncio.sleep(0.01)
        seen.append("before resume")
        flow.resume()
        await asyncio.wait_for(task, 1.0)
        return seen

    assert asyncio.run(scenario()) == ["before resume", "acquired"]


def test_router_app_uses_it(tmp_path: Path) -> None:
    app = create_app(RouterAppConfig(bootstrap="127.0.0.1:1", datadir=tmp_path))
    assert isinstance(app.flow_control, KeepCurrentGeneration)
    assert app.flow_control is app.flow_control  # one per app: queues register with it
