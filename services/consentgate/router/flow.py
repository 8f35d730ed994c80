"""Flow control that never throws away records of the current generation.

faust's ``app.flow_control`` (mode's ``FlowControlEvent``) clears every stream and changelog
queue whenever ``resume()`` is called, and faust's recovery calls it several times per
rebalance: when it starts reading changelogs, again for tables with
``recovery_buffer_size=1`` (our consent view), and once more in ``_resume_streams`` *after*
it has resumed the stream partitions and awaited ``perform_seek`` (one committed-offset
request per partition). Records the fetcher delivered in that window are cleared from the
queues without being processed or acknowledged:

- raw events: aiokafka does not seek a partition that has no committed offset, so a new
  consumer group resumed *after* the cleared records and faust then committed past them.
  Measured on 2026-11-26 (6 partitions, 30,000-event backlog): offsets 0-601 of every raw
  partition lost in one run; in 7 of 22 runs one partition's commits stuck at offset 1.
- consent records: with ``recovery_buffer_size=1`` the consent view's changelog partitions
  are live in that window too, so a consent change could be cleared from the table's queue
  and never applied.

Clearing is right when flow resumes after a suspension (a rebalance: the queues hold records
of the previous generation, which are re-read from committed offsets). A ``resume()`` while
flow is already active has nothing stale to drop, so this class makes it a no-op.
"""

from __future__ import annotations

from mode.utils.queues import FlowControlEvent

__all__ = ["KeepCurrentGeneration"]


class KeepCurrentGeneration(FlowControlEvent):
    """``resume()`` clears the queues only when flow was suspended."""

    def resume(self) -> None:
        was_suspended = not self.is_active()
        self._suspend.clear()
        self._resume.set()
        if was_suspended:
            self.clear()
