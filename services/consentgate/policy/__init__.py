"""The routing policy: a declarative, versioned file and a pure decision function over it.

The router's whole use of it::

    policy = load_policy("deploy/policy.yaml")                 # PolicyError if invalid
    keys = PseudonymKeys.from_settings()                       # CONSENTGATE_PSEUDONYM_*
    keys.check(pseudonym_key_names(policy.sinks))              # fail fast
    source = policy.source_for_topic(topic)
    event = SourceEvent.from_record(source, decoded_record)    # never raises
    for sink, decision in decide_all(event, timeline, policy.sinks_for(source.name),
                                     now, policy.defaults):
        if decision.allowed:
            value = project(event, sink, decision.evidence, keys)

``decide``/``project`` do no I/O; only ``load``/``check`` read files.
"""

from __future__ import annotations

from consentgate.policy.decide import decide, decide_all
from consentgate.policy.event import SourceEvent
from consentgate.policy.load import CheckedPolicy, check_policy, load_policy, parse_policy
from consentgate.policy.model import (
    FIRST_PARTY,
    Defaults,
    Policy,
    Recipient,
    Sink,
    Source,
    SubjectHandling,
)
from consentgate.policy.project import (
    project,
    pseudonym_key_names,
    retraction_key,
    subject_key,
)
from consentgate.policy.pseudonym import PseudonymKeys, PseudonymSettings
from consentgate.policy.reasons import Decision, ReasonCode

__all__ = [
    "FIRST_PARTY",
    "CheckedPolicy",
    "Decision",
    "Defaults",
    "Policy",
    "PseudonymKeys",
    "PseudonymSettings",
    "ReasonCode",
    "Recipient",
    "Sink",
    "Source",
    "SourceEvent",
    "SubjectHandling",
    "check_policy",
    "decide",
    "decide_all",
    "load_policy",
    "parse_policy",
    "project",
    "pseudonym_key_names",
    "retraction_key",
    "subject_key",
]
