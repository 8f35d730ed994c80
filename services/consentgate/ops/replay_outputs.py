"""The records a replay writes, from the router core's plans. Pure.

- :class:`PlanSplitter`: a plan's outputs per sink (the sink record, its provision), the
  decision record and dead letters, so that the engine can keep only the selected sinks and,
  against a live sink, only what it does not hold yet. A provision names its sink in its
  value (``ProvisionRecord.sink``); that is how it is matched, not by position.
- :func:`replay_retraction`: the null record for a live record the replay now denies, with
  the router's retraction headers (``router/retract.py``) and ``cg-retraction: replay``,
  the deny reason and the replay id.
- :class:`Written` and :func:`withdrawn_retractions`: which subjects' data the replay wrote
  to which sinks, and the router's retractions of a withdrawal or erasure for exactly those
  (used for changes that arrive while the replay runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date

from consentgate.models.consent import ConsentChange
from consentgate.models.records import ProvisionRecord
from consentgate.policy import Decision, Policy, PseudonymKeys, Sink
from consentgate.router.outputs import HEADER, Output, OutputTopics
from consentgate.router.plan import RoutePlan
from consentgate.router.retract import retractions
from consentgate.serde import Serde

__all__ = [
    "REASON_HEADER",
    "REPLAY_ID_HEADER",
    "PlanParts",
    "PlanSplitter",
    "Written",
    "moved",
    "replay_retraction",
    "withdrawn_retractions",
]

REASON_HEADER = "cg-reason"
REPLAY_ID_HEADER = "cg-replay-id"


@dataclass(slots=True)
class PlanParts:
    records: dict[str, Output] = field(default_factory=dict)  # sink name -> record
    provisions: dict[str, Output] = field(default_factory=dict)  # sink name -> provision
    decision: Output | None = None
    dead_letters: list[Output] = field(default_factory=list)


class PlanSplitter:
    def __init__(self, policy: Policy, topics: OutputTopics, serde: Serde) -> None:
        self.topics = topics
        self.serde = serde
        self._sinks = {s.topic: s for s in policy.sinks}

    def split(self, plan: RoutePlan, day: date | None = None) -> PlanParts:
        """``plan``'s outputs per sink; ``day``: the date it was judged on (its provisions')."""
        parts = PlanParts()
        last: Sink | None = None  # the partner record a provision follows
        for out in plan.outputs:
            topic = out.topic
            if topic == self.topics.decisions:
                parts.decision = out
            elif topic == self.topics.dead_letters:
                parts.dead_letters.append(out)
            elif topic == self.topics.provisions:
                parts.provisions[self._provided(out, last, plan.subject_id, day)] = out
            else:
                sink = self._sinks.get(topic)
                if sink is None:
                    raise ValueError(f"a plan output to {topic}, which is no sink of the policy")
                parts.records[sink.name] = out
                last = sink if sink.recipient is not None else None
        return parts

    def _provided(
        self, provision: Output, last: Sink | None, subject: str | None, day: date | None
    ) -> str:
        """The sink of a provision: the core writes it right after its partner record, and
        its key says so (the deterministic provision id); otherwise its value is read."""
        if last is not None and last.recipient and subject and day and provision.key:
            pid = ProvisionRecord.make_id(last.recipient, subject, last.name, day)
            if provision.key == pid.encode():
                return last.name
        return str(self.serde.decode(provision.value).value["sink"])


def moved(out: Output, topics: Mapping[str, str]) -> Output:
    """``out`` in its versioned topic (``topics``: live -> versioned; absent: unchanged)."""
    target = topics.get(out.topic)
    return out if target is None or target == out.topic else replace(out, topic=target)


def replay_retraction(
    topic: str, key: bytes, *, sink: Sink, decision: Decision, policy_version: str, replay_id: str
) -> Output:
    """A null record under the key the live record has, saying why."""
    headers = (
        (HEADER.RETRACTION, b"replay"),
        (HEADER.CONSENT_CHANGE, (decision.change_id or "").encode()),
        (HEADER.PURPOSE, sink.purpose.encode()),
        (HEADER.POLICY_VERSION, policy_version.encode()),
        (REASON_HEADER, str(decision.reason).encode()),
        (REPLAY_ID_HEADER, replay_id.encode()),
    )
    return Output(topic, key, None, headers)


class Written:
    """Subject -> the sinks the replay wrote their data to (a bit per sink)."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self._bit = {s.name: 1 << i for i, s in enumerate(sinks)}
        self._names = [s.name for s in sinks]
        self._subjects: dict[str, int] = {}

    def add(self, subject: str, sink: str) -> None:
        self._subjects[subject] = self._subjects.get(subject, 0) | self._bit[sink]

    def sinks_of(self, subject: str) -> set[str]:
        mask = self._subjects.get(subject, 0)
        return {name for i, name in enumerate(self._names) if mask >> i & 1}

    def clear(self) -> None:
        self._subjects.clear()

    def __len__(self) -> int:
        return len(self._subjects)


def withdrawn_retractions(
    policy: Policy,
    changes: Iterable[ConsentChange],
    keys: PseudonymKeys,
    written: Written,
) -> list[Output]:
    """The router's retractions of ``changes``, for the sinks the replay wrote each subject
    to (live topic names; every record the replay wrote is under the current key)."""
    topics = {s.topic: s.name for s in policy.sinks}
    out: list[Output] = []
    for change in changes:
        wrote = written.sinks_of(change.subject_id)
        if wrote:
            out.extend(r for r in retractions(policy, change, keys) if topics[r.topic] in wrote)
    return out
