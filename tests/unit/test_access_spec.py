"""The ``access`` declaration resolves to exactly the bindings it names, and refuses what it
cannot mean (the cluster side is tests/integration/test_acls.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consentgate.errors import ConfigError
from consentgate.ops.access_spec import Binding, load_access, parse_access
from consentgate.ops.topics_spec import parse_spec

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

TOPICS: dict[str, Any] = {
    "version": 1,
    "topics": {
        "raw": {"role": "source", "config": {"retention.ms": 3024000000}},
        "analytics": {
            "role": "sink",
            "config": {"retention.ms": 2592000000, "segment.ms": 86400000},
        },
        "partner.a.v1": {
            "role": "sink",
            "config": {"retention.ms": 2592000000, "segment.ms": 86400000},
        },
        "partner.b.v1": {
            "role": "sink",
            "config": {"retention.ms": 2592000000, "segment.ms": 86400000},
        },
    },
}
RECIPIENTS = {"partner.a.v1": "a", "partner.b.v1": "b"}


def _access(data: dict[str, Any]) -> set[Binding]:
    return set(parse_access(data, parse_spec(TOPICS), RECIPIENTS).bindings)


def test_roles_names_groups_and_transactional_ids_become_bindings() -> None:
    found = _access(
        {
            "principals": {
                "router": {
                    "principal": "User:r",
                    "read": ["role:source"],
                    "write": ["role:sink"],
                    "groups": ["g"],
                    "transactional_ids": ["t"],
                },
                "analytics": {"principal": "User:an", "read": ["analytics"]},
            }
        }
    )
    assert found == {
        Binding("User:r", "TOPIC", "raw", "LITERAL", "READ"),
        Binding("User:r", "TOPIC", "analytics", "LITERAL", "WRITE"),
        Binding("User:r", "TOPIC", "partner.a.v1", "LITERAL", "WRITE"),
        Binding("User:r", "TOPIC", "partner.b.v1", "LITERAL", "WRITE"),
        Binding("User:r", "GROUP", "g", "PREFIXED", "READ"),
        Binding("User:r", "TRANSACTIONAL_ID", "t", "PREFIXED", "WRITE"),
        Binding("User:an", "TOPIC", "analytics", "LITERAL", "READ"),
    }


def test_each_partner_reads_its_own_sinks_and_nothing_else() -> None:
    spec = parse_access(
        {"partners": {"principal": "User:partner-{recipient}", "groups": ["p-{recipient}."]}},
        parse_spec(TOPICS),
        RECIPIENTS,
    )
    assert set(spec.of("User:partner-a")) == {
        Binding("User:partner-a", "TOPIC", "partner.a.v1", "LITERAL", "READ"),
        Binding("User:partner-a", "GROUP", "p-a.", "PREFIXED", "READ"),
    }
    assert spec.governs("User:partner-b")
    assert spec.governs("User:partner-gone")  # a removed recipient: apply takes its ACLs away
    assert not spec.governs("User:someone-else")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"principals": {"x": {"principal": "User:x", "read": ["nope"]}}}, "not declared"),
        ({"principals": {"x": {"principal": "User:x", "read": ["role:decisions"]}}}, "no declared"),
        ({"principals": {"x": {"principal": "x"}}}, "User:<name>"),
        ({"principals": {"x": {"principal": "User:x"}, "y": {"principal": "User:x"}}}, "twice"),
        ({"partners": {"principal": "User:partner"}}, "{recipient}"),
        ({"partners": {"principal": "User:p-{recipient}", "read": ["raw"]}}, "no read/write"),
        (
            {"partners": {"principal": "User:p-{recipient}", "groups": ["p-{recipient}"]}},
            "delimiter",
        ),
        ({"principals": {"x": {"principal": "User:x", "reed": ["raw"]}}}, "invalid access"),
    ],
)
def test_what_cannot_be_meant_is_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _access(data)


def test_the_shipped_declaration_gives_partners_their_own_topics_only() -> None:
    access = load_access(REPO / "deploy" / "topics.yaml")
    partners = sorted(p for p in access.principals if p.startswith("User:partner-"))
    assert len(partners) >= 3
    for principal in partners:
        recipient = principal.removeprefix("User:partner-")
        topics = {b.name for b in access.of(principal) if b.resource_type == "TOPIC"}
        assert topics and all(t.startswith(f"partner.{recipient}.") for t in topics), topics
        assert {b.operation for b in access.of(principal)} == {"READ"}
    analytics = {b.name for b in access.of("User:analytics") if b.resource_type == "TOPIC"}
    assert analytics == {"events.browsing.analytics.v1"}
    router_writes = {b.name for b in access.of("User:consentgate-router") if b.operation == "WRITE"}
    assert "events.browsing.raw.v1" not in router_writes  # it never writes its input
    assert "consent.state.v1" not in router_writes  # nor the consent view
