"""The router's gauges, sampled by the loop about once a second."""

from __future__ import annotations

from typing import TYPE_CHECKING

from confluent_kafka import TopicPartition

if TYPE_CHECKING:
    from consentgate.router.loop import RouterLoop

__all__ = ["sample_gauges"]


def sample_gauges(loop: RouterLoop) -> None:
    m, changes = loop.s.metrics, loop.s.config.topics.consent_changes
    m.waiting.set(sum(len(q) for (t, _p), q in loop.queues.items() if t != changes))
    m.unsettled.set(sum(len(u) for u in loop.unsettled.values()))
    m.view_subjects.set(loop.view.size())
    for p in loop.s.assigned:
        lag = loop.tracker.lag(p)
        if lag is not None:
            m.consent_lag.labels(str(p)).set(lag)
    for t, p in list(loop.queues):
        tp = TopicPartition(t, p)
        _low, high = loop.consumer.get_watermark_offsets(tp, cached=True)
        (pos,) = loop.consumer.position([tp])
        if high >= 0 and pos.offset >= 0:
            m.input_lag.labels(t, str(p)).set(max(0, high - pos.offset))
