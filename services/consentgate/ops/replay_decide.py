"""The deciding pass of ``--live`` and ``--dry-run``: every record judged against what the
live sinks hold, nothing written.

Per (event, selected sink), with the sink's name for the event (``EventRef.ids``):

- allowed and held: unchanged; allowed and not held: would be added;
- denied and held: retracted, under every key that holds the subject's data in that sink:
  the keys of the event's own records, and, for a partner sink, the keys other than the
  subject's current one that the provision ledger names for the subject and the sink still
  holds (a record written under a former pseudonym key carries an event id scoped with that
  key, which no current key can recompute: the ledger's ``subject_key`` is what links it to
  the subject). A denied event of a subject the sink holds data of under a former key counts
  as held: fail closed. Under the current key each record is judged by its own event: a
  denied event does not retract its subject's allowed ones (which would be written again,
  after the retraction: churn for consumers, and duplicates in the audit).

The result is, per sink, key -> the decision that retracts it (the first one found), and the
(sink, identity) pairs retracted, so that the writing pass records their decisions.
"""

from __future__ import annotations

from consentgate.ops.replay_consent import ConsentSource
from consentgate.ops.replay_judge import judge_record
from consentgate.ops.replay_live import HeldIndex, classify
from consentgate.ops.replay_report import ReplayReport
from consentgate.policy import Decision, Sink, retraction_key
from consentgate.router.judge import Judge
from consentgate.router.plan import RawRecord

__all__ = ["Decider"]


class Decider:
    def __init__(
        self,
        judge: Judge,
        consent: ConsentSource,
        sinks: tuple[Sink, ...],
        index: dict[str, HeldIndex],
        report: ReplayReport,
    ) -> None:
        self.judge = judge
        self.keys = judge.core.keys
        self.consent = consent
        self.sinks = sinks
        self.selected = {s.name for s in sinks}
        self.index = index
        self.report = report
        self.pending: dict[str, dict[bytes, Decision]] = {s.name: {} for s in sinks}
        self.retracted: set[tuple[str, str]] = set()

    def handle(self, rec: RawRecord) -> None:
        plan, ref, _ = judge_record(self.judge, self.consent, rec)
        report = self.report
        report.events += 1
        if plan.dead_letter:
            report.dead_letters += 1
        if plan.decisions:
            report.count(plan.decisions, self.selected)
        for sink, decision in plan.decisions:
            if sink.name not in self.selected:
                continue
            index = self.index[sink.name]
            ids = ref.ids(sink, self.keys)
            held = index.holds(ids)
            keys: set[bytes] = set()
            if not decision.allowed:
                keys = index.keys_of(ids) | self._former_keys(index, sink, ref.subject)
                held = held or bool(keys)
            outcome = classify(decision.allowed, held)
            report.outcome(sink.name, sink.topic, outcome)
            if outcome == "retract":
                pending = self.pending[sink.name]
                for key in keys:
                    pending.setdefault(key, decision)
                self.retracted.update((sink.name, i) for i in ids)

    def _former_keys(self, index: HeldIndex, sink: Sink, subject: str | None) -> set[bytes]:
        """The keys the ledger names for ``subject`` in ``sink`` other than its key now.
        Records under the current key carry ids this replay computes, so each is judged by
        its own event (a denied event does not take its subject's allowed ones with it)."""
        keys = index.subject_keys(subject)
        current = retraction_key(sink, subject, self.keys) if subject is not None else None
        if current is not None:
            keys.discard(current.encode())
        return keys

    def finish(self) -> dict[str, dict[bytes, Decision]]:
        for sink in self.sinks:
            self.report.tally(sink.name, sink.topic).retraction_keys = len(self.pending[sink.name])
        return self.pending
