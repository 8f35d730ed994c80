"""The manual retraction path's pure parts: which sinks, which keys, which records."""

from __future__ import annotations

import pytest

from consentgate.errors import ConfigError
from consentgate.ops.retract import affected_sinks, manual_retraction, plan_retractions
from consentgate.router.outputs import HEADER
from tests.unit.policy_fixtures import KEYS, POLICY, SINKS

pytestmark = pytest.mark.unit


def test_every_retractable_sink_by_default_and_only_retractable_ones_by_name() -> None:
    names = {s.name for s in affected_sinks(POLICY, None)}
    assert "site_counts" not in names  # drops subject ids: nothing per subject
    assert names == {s.name for s in POLICY.sinks if s.retractable}
    assert [s.name for s in affected_sinks(POLICY, ["analytics", "analytics"])] == ["analytics"]
    with pytest.raises(ConfigError, match="drop subject ids"):
        affected_sinks(POLICY, ["site_counts"])
    with pytest.raises(ConfigError, match="no such sink: nope"):
        affected_sinks(POLICY, ["analytics", "nope"])


def test_keys_from_the_current_key_the_ledger_and_the_records_once_each() -> None:
    acme, beta = SINKS["partner.acme-corp.browsing"], SINKS["partner.beta-inc.browsing"]
    current = KEYS.pseudonym("acme-corp", "s1")
    plan = plan_retractions(
        [acme, beta],
        "s1",
        KEYS,
        ledger={acme.name: {"old-acme", current}},
        records={acme.name: {b"old-acme", b"older-acme"}},
    )
    found = {(r.sink.name, r.key): r.found_by for r in plan}
    assert found == {
        (acme.name, current.encode()): ("current", "ledger"),
        (acme.name, b"old-acme"): ("ledger", "records"),
        (acme.name, b"older-acme"): ("records",),
        (beta.name, b"s1"): ("current",),  # keep_if_named_recipient: the raw id
    }


def test_a_manual_retraction_says_who_and_why() -> None:
    (item,) = plan_retractions([SINKS["analytics"]], "s1", KEYS, {}, {})
    out = manual_retraction(item, "request 42", "v9")
    assert out.topic == "events.browsing.analytics.v1" and out.value is None
    assert out.key == KEYS.pseudonym("_first_party", "s1").encode()
    assert dict(out.headers) == {
        HEADER.RETRACTION: b"manual",
        "cg-reason": b"request 42",
        HEADER.POLICY_VERSION: b"v9",
        HEADER.PURPOSE: b"analytics",
    }
