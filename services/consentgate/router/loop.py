"""The router's I/O: one consume-transform-produce loop, transactional, per worker.

Each iteration: consume raw events and consent changes (one group consumer, read_committed,
range assignment so that partition N of every co-partitioned topic comes to the same
worker) -> apply new consent records to the view -> take the gate's end-offset observations
-> work off each partition's queue in order -> every ``commit_interval`` commit the outputs
and the input offsets in one transaction. Nothing awaits or yields between an event's
consent lookup and the produce of its outputs.

Per raw partition, the head event is parsed (dead letter if bad), checked for its key and
partition (``misplaced``), held at the gate until the view could know its consent (or
``consent_state_stale`` after ``consent_wait`` since it arrived), and judged. The gate has
two halves, each an end-offset observation at or after the event's time against a position
(gate.py): consent.state against the view (the view is as new as the event), and
consent.changes against what this loop has read of it (every change recorded before the
event is known here, so a change the fold has not folded yet holds its subject: the
subject's events wait until the view shows it). Per changes partition, changes settle in log
order once the view shows them; a withdrawal or erasure is then retracted (pending.py).

Fail-stop: any error the loop cannot turn into an outcome raises :class:`Fatal`; the worker
then exits 70 without committing, and its successor re-reads from the last commit.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from consentgate.router.changes import read_change, work_changes
from consentgate.router.emit import Emitter
from consentgate.router.gate import GateVerdict, WatermarkTracker
from consentgate.router.gauges import sample_gauges
from consentgate.router.judge import Judge
from consentgate.router.offsets import EndOffsetPoller
from consentgate.router.pending import Unsettled
from consentgate.router.plan import Parsed, RawRecord, RoutePlan
from consentgate.router.state import LoopState
from consentgate.router.txn import Aborted, Fatal, Outbox
from consentgate.router.view import ConsentView

__all__ = ["RouterLoop"]

log = logging.getLogger(__name__)

Entry = list[Any]  # [message, arrival (monotonic), RawRecord, Parsed | RoutePlan | change]


class RouterLoop:
    """Wired by :mod:`consentgate.router.run`; ``run()`` returns when stopped."""

    def __init__(
        self,
        *,
        state: LoopState,
        consumer: Consumer,
        outbox: Outbox,
        view: ConsentView,
        poller: EndOffsetPoller,
        changes_poller: EndOffsetPoller,
        judge: Judge,
        emitter: Emitter,
    ) -> None:
        self.s = state
        self.consumer = consumer
        self.outbox = outbox
        self.view = view
        self.poller = poller
        self.changes_poller = changes_poller
        self.judge = judge
        self.emitter = emitter
        self.tracker = WatermarkTracker(clock_skew=state.config.gate.skew)
        # consent.changes: end offsets observed vs. the offset this loop has read up to
        # (a record's offset + 1 at intake, or the end at a partition EOF)
        self.changes_tracker = WatermarkTracker(clock_skew=state.config.gate.skew)
        # the gate's two halves, checked in this order for every event
        self._changes = state.config.topics.consent_changes
        # (patient: the changes half waits while this loop is still reading a backlog)
        self._halves = (
            (self.tracker, self.poller, False),
            (self.changes_tracker, self.changes_poller, True),
        )
        self.queues: dict[tuple[str, int], deque[Entry]] = {}
        self.paused: set[tuple[str, int]] = set()
        self.offsets: dict[tuple[str, int], int] = {}  # next offset to commit, this txn
        self.unsettled: dict[int, Unsettled] = {}
        self.stopping = False
        self._judged = 0
        self._aborts_in_row = 0
        self._gauges_at = 0.0

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> None:
        cfg = self.s.config.loop
        consumer = self.consumer
        while not self.stopping:
            busy = any(self.queues.values())
            msgs = consumer.consume(cfg.batch, 0.005 if busy else 0.05)
            try:
                self._intake(msgs)
                self._refresh_view()
                if any(self.queues.values()):
                    self.outbox.begin()
                    self._work()
                self.outbox.poll()
                if self.outbox.open and (
                    time.monotonic() - self.outbox.opened_at >= cfg.commit_interval
                ):
                    self.commit()
            except Aborted as exc:
                self._aborted(exc)
            if time.monotonic() - self._gauges_at >= 1.0:
                self._gauges_at = time.monotonic()
                sample_gauges(self)
        self.commit()

    def commit(self) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.offsets.items()]
        started = time.monotonic()
        try:
            self.outbox.commit(offsets, self.consumer.consumer_group_metadata())
            took = time.monotonic() - started
            self.s.metrics.commit_seconds.observe(took)
            if took > 1.0:
                log.warning("transaction commit took %.1f s", took)
        except Aborted as exc:
            self._aborted(exc)
            return
        self.offsets.clear()
        self._aborts_in_row = 0
        self.s.metrics.commits.inc()
        self.emitter.committed()

    def _aborted(self, exc: Aborted) -> None:
        self._aborts_in_row += 1
        self.s.metrics.aborts.inc()
        log.error("transaction aborted (%d in a row): %s", self._aborts_in_row, exc)
        if self._aborts_in_row >= self.s.config.loop.max_aborts:
            raise Fatal(f"{self._aborts_in_row} transactions aborted in a row; last: {exc}")
        self.rewind()

    def discard(self) -> None:
        """Abort the open transaction and forget what it would have committed."""
        self.outbox.abort()
        self.offsets.clear()
        self.emitter.aborted()

    def rewind(self) -> None:
        """Back to the committed offsets: nothing of the aborted transaction happened."""
        self.discard()
        for queue in self.queues.values():
            queue.clear()
        for unsettled in self.unsettled.values():
            unsettled.clear()
        now = time.monotonic()
        for p in self.unsettled:  # re-read from the committed offsets: known again at EOF
            self.changes_tracker.reset_position(p, now)
        assigned = self.consumer.assignment()
        if assigned:
            for tp in self.consumer.committed(assigned, timeout=30):
                offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            if self.paused:
                self.consumer.resume([TopicPartition(t, p) for t, p in self.paused])
                self.paused.clear()
        self.emitter.reload_provisions(self.s.assigned)

    # -- intake -------------------------------------------------------------------------
    def _intake(self, msgs: list[Message]) -> None:
        now = time.monotonic()
        changes = self.s.config.topics.consent_changes
        queues = self.queues
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    eof = (m.topic() or "", m.partition() or 0)
                    if eof[0] == changes and eof in queues:
                        self.changes_tracker.observe_position(eof[1], m.offset() or 0, now)
                    continue
                if err.fatal() or err.code() in _FATAL_CONSUME:
                    raise Fatal(f"consumer: {err}")
                log.warning("consumer: %s", err)
                continue
            key = (m.topic() or "", m.partition() or 0)
            queue = queues.get(key)
            if queue is None:
                continue  # fetched before a revocation
            rec = _raw(m)
            entry: Entry = [m, now, rec, None]
            if key[0] == changes:
                entry[3] = read_change(self, m)
                self.changes_tracker.observe_position(key[1], rec.offset + 1, now)
            queue.append(entry)
        for key, queue in queues.items():
            if len(queue) > self.s.config.loop.max_queued and key not in self.paused:
                self.consumer.pause([TopicPartition(*key)])
                self.paused.add(key)

    def _refresh_view(self) -> None:
        view, tracker = self.view, self.tracker
        view.poll()
        view.refresh_positions()
        for p in view.partitions:
            tracker.observe_position(p, view.position(p))
        for observed_at, ends in self.poller.drain():
            for p, end in ends.items():
                tracker.observe_end(p, end, observed_at)
        for observed_at, ends in self.changes_poller.drain():
            for p, end in ends.items():
                self.changes_tracker.observe_end(p, end, observed_at)

    # -- work ---------------------------------------------------------------------------
    def _work(self) -> None:
        now = datetime.now(UTC)  # after the view poll: every change it holds is <= now
        mono = time.monotonic()
        changes = self.s.config.topics.consent_changes
        for key, queue in self.queues.items():
            if queue:
                if key[0] == changes:
                    work_changes(self, key, queue, now)
                else:
                    self._work_events(key, queue, now, mono)
            if key in self.paused and len(queue) < self.s.config.loop.max_queued // 2:
                self.consumer.resume([TopicPartition(*key)])
                self.paused.discard(key)

    def _work_events(
        self, key: tuple[str, int], queue: deque[Entry], now: datetime, mono: float
    ) -> None:
        judge, emit = self.judge, self.emitter.emit
        max_wait = self.s.consent_wait
        partition = key[1]
        unsettled = self.unsettled[partition]
        core = judge.core
        while queue:
            entry = queue[0]
            rec = entry[2]
            parsed = entry[3]
            if parsed is None:
                parsed = entry[3] = core.parse(rec, now)
            if isinstance(parsed, RoutePlan):
                emit(parsed, rec, partition)
            else:
                misplaced = judge.misplaced(parsed, now)
                if misplaced is not None:
                    emit(misplaced, rec, partition)
                else:
                    verdict = self._gate(parsed, partition, unsettled, entry[1], mono, max_wait)
                    if verdict is GateVerdict.WAIT:
                        return  # the partition waits; order within it is kept
                    self._judge(parsed, rec, partition, verdict, now)
            queue.popleft()
            self.offsets[key] = rec.offset + 1

    def _gate(  # noqa: PLR0917 - per-event values of _work_events
        self,
        parsed: Parsed,
        partition: int,
        unsettled: Unsettled,
        arrived: float,
        mono: float,
        max_wait: float,
    ) -> GateVerdict:
        """READY when the view and the changes read are as new as the event and the view
        shows every change of its subject read so far; WAIT; STALE after ``max_wait``."""
        when = parsed.event.event_time  # None: denied as invalid_event, gated as of now
        t = when.timestamp() if when is not None else time.time()
        paused = bool(self.paused) and (self._changes, partition) in self.paused
        for tracker, poller, patient in self._halves:
            verdict = tracker.check(
                partition,
                t,
                waiting_since=arrived,
                now_mono=mono,
                max_wait=max_wait,
                patient=patient and not paused,  # paused by this loop: it will not move
            )
            if verdict is not GateVerdict.READY:
                if verdict is GateVerdict.WAIT and tracker.required_offset(partition, t) is None:
                    poller.request()
                return verdict
        if unsettled and (parsed.event.subject_id or "").encode() in unsettled:
            return GateVerdict.STALE if mono - arrived >= max_wait else GateVerdict.WAIT
        return GateVerdict.READY

    def _judge(
        self, parsed: Parsed, rec: RawRecord, partition: int, verdict: GateVerdict, now: datetime
    ) -> None:
        subject = (parsed.event.subject_id or "").encode()
        lookup = self.view.lookup(partition, subject)
        if verdict is GateVerdict.STALE:
            log.warning("%s: consent view not fresh after the wait: denying", rec.where)
        self._judged += 1
        every = self.s.config.loop.shadow_every
        if every and self._judged % every == 0:  # the uncached rule first: it reads the
            # provision memory without writing it, so both plans must be equal
            uncached = self.judge.judge(parsed, verdict, lookup, now, uncached=True)
            plan = self.judge.judge(parsed, verdict, lookup, now)
            self.emitter.shadow_check(plan, uncached)
        else:
            plan = self.judge.judge(parsed, verdict, lookup, now)
        self.emitter.emit(plan, rec, partition)


_FATAL_CONSUME = {
    # a fatal consumer error (e.g. "static consumer fenced by other consumer with same
    # group.instance.id" after a broker restart) arrives as an event whose fatal() is false;
    # the consumer is dead: going on would consume nothing, forever (test_faults_broker)
    KafkaError._FATAL,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
}


def _raw(m: Message) -> RawRecord:
    ts_type, ts = m.timestamp()
    return RawRecord(
        m.topic(),  # type: ignore[arg-type]  # str for records
        m.partition(),  # type: ignore[arg-type]
        m.offset(),  # type: ignore[arg-type]
        m.key(),
        m.value(),
        datetime.fromtimestamp(ts / 1000, UTC) if ts_type and ts > 0 else None,
    )
