"""The audit's own decision rule: each step of DESIGN §2, no hindsight, and agreement with the
router's rule (``policy.decide``) on generated histories, which the audit does not import."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentgate.consent.timeline import apply
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod
from consentgate.ops.audit_rule import RuleChange, SubjectRule
from consentgate.policy import SourceEvent, decide
from consentgate.policy.model import Defaults, Sink
from consentgate.serde import Serde

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = ("partner_sharing", "client-01")
_n = iter(range(10**9))


def change(
    action: str,
    at: float,
    key: tuple[str, str | None] = KEY,
    *,
    expires: float | None = None,
    recorded: float | None = None,
) -> ConsentChange:
    erase = action == "ERASE"
    return ConsentChange(
        change_id=f"c{next(_n)}",
        subject_id="ann",
        action=ConsentAction(action),
        purpose=None if erase else key[0],
        recipient=None if erase else key[1],
        effective_time=T0 + timedelta(seconds=at),
        expires_at=None if expires is None else T0 + timedelta(seconds=expires),
        recorded_time=T0 + timedelta(seconds=at if recorded is None else recorded),
        method=ConsentMethod.API,
    )


def rule(*changes: ConsentChange) -> SubjectRule:
    return SubjectRule(RuleChange.of(c) for c in changes)


def judge(r: SubjectRule, t: float, now: float, known: float | None = None, **kw: object) -> str:
    j = r.judge(
        event_time=T0 + timedelta(seconds=t),
        now=T0 + timedelta(seconds=now),
        known_at=T0 + timedelta(seconds=now if known is None else known),
        key=kw.pop("key", KEY),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    return j.reason


def test_granted_over_the_span_is_allowed_with_the_grant_in_force() -> None:
    g1, g2 = change("GRANT", 0), change("GRANT", 20)
    r = rule(g1, g2)
    assert judge(r, 10, 30) == "allowed"
    verdict = r.judge(
        event_time=T0 + timedelta(seconds=25), now=T0 + timedelta(seconds=30),
        known_at=T0 + timedelta(seconds=30), key=KEY,
    )  # fmt: skip
    assert verdict.grant_id == g2.change_id


def test_each_denial_names_its_step() -> None:
    assert judge(rule(), 10, 20) == "not_granted_at_event_time"
    assert judge(rule(change("GRANT", 15)), 10, 20) == "not_granted_at_event_time"
    assert judge(rule(change("GRANT", 0), change("WITHDRAW", 15)), 10, 20) == "withdrawn"
    assert judge(rule(change("GRANT", 0, expires=15)), 10, 20) == "expired"
    assert judge(rule(change("GRANT", 0), change("ERASE", 15)), 10, 20) == "erased"
    assert judge(rule(change("GRANT", 0)), 100, 20) == "invalid_event"  # beyond the skew
    analytics = change("GRANT", 0, ("profiling", None))
    assert judge(rule(change("GRANT", 0)), 10, 20, extra_purposes=["profiling"]) == (
        "missing_purpose"
    )
    assert judge(rule(change("GRANT", 0), analytics), 10, 20, extra_purposes=["profiling"]) == (
        "allowed"
    )
    assert (
        judge(rule(change("GRANT", 0)), 10, 20, signals={"gpc"}, opt_out_signals=["gpc"])
        == "opt_out_signal"
    )


def test_a_renewal_at_or_before_the_expiry_keeps_the_grant_going() -> None:
    assert judge(rule(change("GRANT", 0, expires=15), change("GRANT", 15)), 10, 20) == "allowed"
    gap = rule(change("GRANT", 0, expires=15), change("GRANT", 16))
    assert judge(gap, 10, 20) == "expired"


def test_a_withdrawal_then_a_new_grant_still_denies_the_older_event() -> None:
    r = rule(change("GRANT", 0), change("WITHDRAW", 12), change("GRANT", 14))
    assert judge(r, 10, 20) == "withdrawn"
    assert judge(r, 15, 20) == "allowed"


def test_no_hindsight_a_change_recorded_after_known_at_does_not_count() -> None:
    """A withdrawal backdated to 12 but recorded at 40: a decision at 20 could not see it."""
    r = rule(change("GRANT", 0), change("WITHDRAW", 12, recorded=40))
    assert judge(r, 10, 20, known=20) == "allowed"
    assert judge(r, 10, 50, known=50) == "withdrawn"


def test_a_repeated_change_id_counts_once() -> None:
    g = change("GRANT", 0)
    r = rule(g, g, change("WITHDRAW", 30))
    assert len(r.changes) == 2
    assert judge(r, 10, 20) == "allowed"


def test_the_audit_does_not_import_the_routers_decision_code() -> None:
    root = Path(__file__).parents[2] / "services" / "consentgate" / "ops"
    for name in ("audit.py", "audit_rule.py"):
        tree = ast.parse((root / name).read_text())
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        }
        banned = ("consentgate.policy.decide", "consentgate.consent")
        assert not {m for m in imported if m.startswith(banned)}, name
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert "decide" not in names and "decide_all" not in names, name


_ACTIONS = st.sampled_from(["GRANT", "GRANT", "WITHDRAW", "ERASE"])
_SINK = Sink.model_validate(
    {
        "name": "p", "topic": "p", "source": "browsing", "purpose": KEY[0],
        "recipient": KEY[1], "fields": ["event_id"], "subject_id": "pseudonymize",
    }
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(_ACTIONS, st.integers(0, 60), st.none() | st.integers(1, 40)), max_size=6
    ),
    t=st.integers(0, 80),
    lag=st.integers(0, 30),
)
def test_agrees_with_the_routers_rule_on_generated_histories(
    steps: list[tuple[str, int, int | None]], t: int, lag: int
) -> None:
    """With every change visible, the two independent rules must agree on allow vs deny."""
    changes = [
        change(a, at, expires=(at + e) if a == "GRANT" and e is not None else None)
        for a, at, e in steps
    ]
    now = T0 + timedelta(seconds=t + lag)
    timeline = None
    for c in changes:  # the router's view at now: the changes recorded by then
        if c.recorded_time <= now:
            timeline = apply(timeline, c)
    event = SourceEvent(
        source="browsing",
        event_id="e1",
        subject_id="ann",
        event_time=T0 + timedelta(seconds=t),
        fields={},
        signals=frozenset(),
    )
    theirs = decide(event, timeline, _SINK, now, Defaults())
    ours = rule(*changes).judge(event_time=event.event_time or now, now=now, known_at=now, key=KEY)
    assert ours.allowed == theirs.allowed, (ours, theirs)
    if ours.allowed:
        assert theirs.evidence is not None
        assert ours.grant_id == theirs.evidence.change_id


def test_a_change_read_from_its_avro_datum_equals_the_validated_one() -> None:
    serde = Serde()
    for c in (change("GRANT", 0, expires=30), change("WITHDRAW", 5), change("ERASE", 9)):
        datum = serde.decode(serde.encode(c)).value
        assert RuleChange.from_datum(datum) == RuleChange.of(c)
