"""Partner records carry only recipient-scoped identifiers (issue 12): two recipients holding
the same event cannot join on its event id, source offsets or headers; first-party records,
decisions and provisions keep the real ids."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import timedelta

import pytest

from consentgate.policy import parse_policy
from consentgate.router.outputs import HEADER
from consentgate.router.plan import Parsed, RawRecord, Router
from tests.unit.policy_fixtures import KEYS, POLICY_YAML
from tests.unit.test_router_plan import NOW, SERDE, T0, browsing, by_topic, change, timeline

pytestmark = pytest.mark.unit

ACME, BETA = "partner.acme-corp.browsing.v1", "partner.beta-inc.browsing.v1"
# the acme sink drops subject ids: its records are keyed by the (scoped) event id
DROP_YAML = POLICY_YAML.replace(
    "    fields: [event_id, event_time, job_id]\n    subject_id: pseudonymize",
    "    fields: [event_id, event_time, job_id]\n    subject_id: drop",
)


def expected_scoped(recipient: str, event_id: uuid.UUID) -> uuid.UUID:
    """The definition, recomputed here without the product's code."""
    key = KEYS.key_for(recipient)
    digest = bytearray(hmac.new(key, b"event:" + str(event_id).encode(), hashlib.sha256).digest())
    digest = digest[:16]
    digest[6] = 0x80 | (digest[6] & 0x0F)
    digest[8] = 0x80 | (digest[8] & 0x3F)
    return uuid.UUID(bytes=bytes(digest))


def routed(policy_yaml: str = POLICY_YAML) -> tuple[uuid.UUID, dict[str, list[object]]]:
    policy = parse_policy(policy_yaml, origin="test").policy
    event_id = uuid.uuid4()
    tl = timeline(
        change("GRANT", "analytics", None, T0),
        change("GRANT", "partner_sharing", "acme-corp", T0),
        change("GRANT", "partner_sharing", "beta-inc", T0),
    )
    rec = RawRecord("events.browsing.raw.v1", 2, 7, b"s1", browsing(event_id=event_id))
    plan = Router(policy, SERDE, KEYS).route(rec, tl, NOW)
    return event_id, by_topic(plan.outputs)


@pytest.mark.parametrize("policy_yaml", [POLICY_YAML, DROP_YAML], ids=["pseudonymize", "drop"])
def test_two_recipients_cannot_join_on_any_identifier(policy_yaml: str) -> None:
    event_id, topics = routed(policy_yaml)
    seen: dict[str, set[object]] = {}
    for topic, recipient in ((ACME, "acme-corp"), (BETA, "beta-inc")):
        (out,) = topics[topic]
        value = SERDE.decode(out.value).value  # type: ignore[attr-defined]
        headers = dict(out.headers)  # type: ignore[attr-defined]
        scoped = expected_scoped(recipient, event_id)
        assert scoped.version == 8 and scoped.variant == uuid.RFC_4122
        assert value["evidence"]["event_id"] == scoped
        assert value["event_id"] == scoped
        assert headers[HEADER.EVENT_ID] == str(scoped).encode()
        assert HEADER.SOURCE not in headers
        assert value["evidence"]["source_partition"] is None
        assert value["evidence"]["source_offset"] is None
        if topic == ACME and policy_yaml is DROP_YAML:
            assert out.key == str(scoped).encode()  # type: ignore[attr-defined]
        identifiers = {
            str(value["evidence"]["event_id"]),
            str(value["event_id"]),
            headers[HEADER.EVENT_ID].decode(),
            str(out.key),  # type: ignore[attr-defined]
            str(value.get("subject_key")),
        }
        seen[recipient] = identifiers - {"None"}
        assert str(event_id) not in seen[recipient]
    assert not seen["acme-corp"] & seen["beta-inc"], "a shared identifier"


def test_first_party_records_decisions_and_provisions_keep_the_real_ids() -> None:
    event_id, topics = routed()
    (analytics,) = topics["events.browsing.analytics.v1"]
    value = SERDE.decode(analytics.value).value  # type: ignore[attr-defined]
    assert value["evidence"]["event_id"] == event_id
    assert value["evidence"]["source_offset"] == 7
    assert value["evidence"]["source_partition"] == 2
    (decision,) = topics["consentgate.decisions.v1"]
    assert SERDE.decode(decision.value).value["event_id"] == event_id  # type: ignore[attr-defined]
    for provision in topics["consentgate.provisions.v1"]:
        prov = SERDE.decode(provision.value).value  # type: ignore[attr-defined]
        assert prov["subject_id"] == "s1"


def test_fast_plan_equals_the_uncached_plan_with_a_drop_partner_sink() -> None:
    policy = parse_policy(DROP_YAML, origin="test").policy
    router = Router(policy, SERDE, KEYS)
    tl = timeline(
        change("GRANT", "analytics", None, T0),
        change("GRANT", "partner_sharing", "acme-corp", T0),
    )
    for n in range(3):
        rec = RawRecord("events.browsing.raw.v1", 2, n, b"s1", browsing())
        parsed = router.parse(rec, NOW)
        assert isinstance(parsed, Parsed)
        for later in (NOW, NOW + timedelta(minutes=1)):
            shadow = router.plan_uncached(parsed, tl, later)
            fast = router.plan(parsed, tl, later)
            assert fast.decisions == shadow.decisions
            assert fast.outputs == shadow.outputs
