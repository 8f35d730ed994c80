"""The writing pass of a replay: each judged record's outputs, in transactions.

Per (event, selected sink): versioned, every allowed pair is written to the sink's versioned
topic; live, only a pair the live sink does not hold (``classify``: add), and a held pair
that is denied now (possible only if consent changed since the deciding pass) is retracted
at once under the keys the sink holds it by. A partner delivery's provision goes with its
record, to the source record's partition of the ledger (co-partitioned), once per subject,
recipient, sink and day: the router core's memory, seeded with the ledger's committed ids;
an event a live partner sink already holds is planned without adding to that memory, so a
provision it does not write is not remembered as written.

The decision record of every event goes to the versioned decisions topic; live, only for the
events whose delivery changed (written, retracted), with ``cg-replay-id``. Dead letters are
written to the versioned topic; live, not again (the router wrote them).

Before each commit, :meth:`Writer.guard` retracts what withdrawals read meanwhile take away
(see :mod:`consentgate.ops.replay`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from consentgate.ops.replay_consent import ConsentSource, CurrentConsent
from consentgate.ops.replay_judge import judge_record
from consentgate.ops.replay_live import EventRef, HeldIndex, classify
from consentgate.ops.replay_outputs import (
    REPLAY_ID_HEADER,
    PlanParts,
    PlanSplitter,
    Written,
    replay_retraction,
    withdrawn_retractions,
)
from consentgate.ops.replay_report import ReplayReport
from consentgate.policy import Decision, Policy, PseudonymKeys, Sink
from consentgate.router.judge import Judge
from consentgate.router.outputs import Output
from consentgate.router.plan import RawRecord
from consentgate.router.txn import Outbox

__all__ = ["Writer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Event:
    ref: EventRef
    subject: str
    partition: int  # of the source record: the provision's partition (co-partitioned)
    uncached: bool  # planned without adding to the provision memory


class Writer:
    def __init__(
        self,
        *,
        replay_id: str,
        judge: Judge,
        consent: ConsentSource,
        sinks: tuple[Sink, ...],
        outbox: Outbox,
        flush: Callable[[], None],
        splitter: PlanSplitter,
        topics: dict[str, str],
        index: dict[str, HeldIndex] | None,
        retracted: set[tuple[str, str]],
        report: ReplayReport,
    ) -> None:
        self.replay_id = replay_id
        self.judge = judge
        self.core = judge.core
        self.policy: Policy = self.core.policy
        self.keys: PseudonymKeys = self.core.keys
        self.consent = consent
        self.sinks = sinks
        self.selected = {s.name for s in sinks}
        self.outbox = outbox
        self.flush = flush
        self.splitter = splitter
        self.topics = topics
        self.index = index or {}
        self.live = index is not None
        self.retracted = retracted
        self.report = report
        self.written = Written(sinks)
        self._partners = [s for s in sinks if s.recipient is not None and s.name in self.index]
        self._topic_sink = {s.topic: s.name for s in self.policy.sinks}
        self._id_header = (REPLAY_ID_HEADER, replay_id.encode())

    # -- records --------------------------------------------------------------------------
    def handle(self, rec: RawRecord) -> None:
        report = self.report
        report.events += 1
        held_partner = self._held_partner if self._partners else None
        plan, ref, now = judge_record(self.judge, self.consent, rec, held_partner)
        parts = self.splitter.split(plan, now.date())
        if plan.dead_letter:
            report.dead_letters += 1
            if not self.live:
                for letter in parts.dead_letters:
                    self.produce(letter)
        if plan.decisions:
            report.count(plan.decisions, self.selected)
        uncached = held_partner is not None and held_partner(ref)
        event = _Event(ref, plan.subject_id or "", rec.partition, uncached)
        changed = False
        for sink, decision in plan.decisions:
            if sink.name not in self.selected:
                continue
            if not self.live:
                if decision.allowed:
                    self._add(sink, parts, event, None)
                continue
            changed |= self._live(sink, decision, parts, event)
        decision_record = parts.decision
        if decision_record is not None and (changed or not self.live):
            headers = (*decision_record.headers, self._id_header)
            self.produce(replace(decision_record, headers=headers))

    def _held_partner(self, ref: EventRef) -> bool:
        return any(self.index[s.name].holds(ref.ids(s, self.keys)) for s in self._partners)

    def _add(self, sink: Sink, parts: PlanParts, event: _Event, index: HeldIndex | None) -> None:
        """Write the sink's record of the event and its provision."""
        self.report.outcome(sink.name, sink.topic, "add")
        record = parts.records[sink.name]
        self.produce(record)
        self.written.add(event.subject, sink.name)
        if index is not None and record.key is not None:
            index.data(record.key, event.ref.ids(sink, self.keys)[0])
        provision = parts.provisions.get(sink.name)
        if provision is not None:
            self.produce(provision, event.partition)
            if event.uncached and provision.key is not None:
                self.core.remember_provisions([provision.key.decode()])

    def _live(self, sink: Sink, decision: Decision, parts: PlanParts, event: _Event) -> bool:
        """Against the live sink: write, retract or leave; whether the sink changed (or was
        retracted for this event by the deciding pass)."""
        ids = event.ref.ids(sink, self.keys)
        index = self.index[sink.name]
        outcome = classify(decision.allowed, index.holds(ids))
        if outcome == "add":
            self._add(sink, parts, event, index)
            return True
        self.report.outcome(sink.name, sink.topic, outcome)
        if outcome == "retract":  # consent changed since the deciding pass
            for key in sorted(index.keys_of(ids)):
                self.produce(
                    replay_retraction(
                        sink.topic,
                        key,
                        sink=sink,
                        decision=decision,
                        policy_version=self.policy.version,
                        replay_id=self.replay_id,
                    )
                )
                index.retracted(key)
                self.report.tally(sink.name, sink.topic).retraction_keys += 1
            self.report.late_retractions += 1
            return True
        return any((sink.name, i) in self.retracted for i in ids)

    def produce(self, out: Output, partition: int = -1) -> None:
        """``out`` into its versioned topic (``moved``), in the open transaction."""
        self.outbox.begin()
        topic = self.topics.get(out.topic, out.topic)
        headers = list(out.headers) or None
        self.outbox.produce(topic, out.key, out.value, headers, partition)

    # -- before a commit ------------------------------------------------------------------
    def guard(self) -> None:
        """Retract, after the data, what a withdrawal appended meanwhile takes away."""
        if not isinstance(self.consent, CurrentConsent) or not len(self.written):
            self.consent.catch_up()
            return
        self.flush()  # our records are appended: a change read from now on may precede them
        changes = self.consent.catch_up()
        outs = withdrawn_retractions(self.policy, changes, self.keys, self.written)
        for out in outs:
            self.produce(out)
            index = self.index.get(self._topic_sink.get(out.topic, ""))
            if index is not None and out.key is not None:
                index.retracted(out.key)
        if outs:
            self.report.withdrawn_while_running += len(outs)
            log.info("%d retractions for withdrawals read while replaying", len(outs))

    def committed(self) -> None:
        if self.live:
            self.written.clear()  # committed: the router retracts anything later
