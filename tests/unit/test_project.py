"""Projection and pseudonyms: only listed fields leave, ids are keyed per recipient."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from consentgate.consent import Evidence
from consentgate.errors import ConfigError
from consentgate.models.consent import ConsentMethod
from consentgate.policy import (
    FIRST_PARTY,
    PseudonymKeys,
    PseudonymSettings,
    Sink,
    SourceEvent,
    project,
    pseudonym_key_names,
    retraction_key,
)
from consentgate.policy.project import RESERVED_FIELDS
from consentgate.policy.pseudonym import hkdf_sha256
from tests.unit.consent_strategies import MANY, SUBJECT, at
from tests.unit.policy_fixtures import KEYS, POLICY, SINKS, event

pytestmark = pytest.mark.unit

ADDED = {"purpose", "recipient", "subject_key"}


def evidence_for(sink: Sink, recipient: str | None = "same") -> Evidence:
    return Evidence(
        change_id="g1",
        purpose=sink.purpose,
        recipient=sink.recipient if recipient == "same" else recipient,
        method=ConsentMethod.WEB_FORM,
        notice_version="2025-04",
        effective_time=at(0),
    )


field_names = st.sampled_from(
    ["event_id", "event_time", "page_url", "job_id", "company_id", "subject_id", "ip_address",
     "search_query", "score", "score_type", "model_version", "country", "event_type", "secret"]
)  # fmt: skip
field_values = st.one_of(st.none(), st.integers(), st.text(max_size=8), st.floats(allow_nan=False))


@MANY
@given(
    st.sampled_from(POLICY.sinks), st.dictionaries(field_names, field_values), st.text(min_size=1)
)
def test_projection_never_emits_an_unlisted_field(
    sink: Sink, fields: dict[str, Any], subject: str
) -> None:
    e = SourceEvent(sink.source, "e1", subject, at(1), fields)
    projected = project(e, sink, evidence_for(sink), KEYS)
    assert set(projected) == set(sink.fields) | ADDED
    for name in sink.fields:
        assert projected[name] == fields.get(name)
    assert (projected["purpose"], projected["recipient"]) == (sink.purpose, sink.recipient)
    if sink.subject_id == "pseudonymize":
        assert projected["subject_key"] == KEYS.pseudonym(sink.key_name, subject) != subject


@MANY
@given(st.text(min_size=1), st.text(min_size=1))
def test_pseudonyms_are_stable_per_recipient_and_distinct_across(subject: str, other: str) -> None:
    acme = KEYS.pseudonym("acme-corp", subject)
    assert acme == KEYS.pseudonym("acme-corp", subject)
    assert acme != KEYS.pseudonym("beta-inc", subject)
    assert acme != KEYS.pseudonym(FIRST_PARTY, subject)
    assert len(acme) == 64 and int(acme, 16) >= 0
    assert (acme == KEYS.pseudonym("acme-corp", other)) is (subject == other)


def test_pseudonym_is_not_a_plain_hash() -> None:
    assert KEYS.pseudonym("acme-corp", SUBJECT) != hashlib.sha256(SUBJECT.encode()).hexdigest()


def test_subject_handling() -> None:
    e = event(at(1))
    analytics, counts = SINKS["analytics"], SINKS["site_counts"]
    beta = SINKS["partner.beta-inc.browsing"]
    assert project(e, analytics, evidence_for(analytics), KEYS)["subject_key"] == KEYS.pseudonym(
        FIRST_PARTY, SUBJECT
    )
    assert project(e, counts, evidence_for(counts), KEYS)["subject_key"] is None
    assert project(e, beta, evidence_for(beta), KEYS)["subject_key"] == SUBJECT
    unnamed = evidence_for(beta, recipient=None)  # a grant that does not name beta-inc
    assert project(e, beta, unnamed, KEYS)["subject_key"] == KEYS.pseudonym("beta-inc", SUBJECT)


def test_retraction_keys_match_what_was_delivered() -> None:
    for sink in POLICY.sinks:
        key = retraction_key(sink, SUBJECT, KEYS)
        delivered = project(event(at(1), source=sink.source), sink, evidence_for(sink), KEYS)
        assert key == delivered["subject_key"]
        assert (key is None) is (not sink.retractable)


def test_projecting_an_event_without_subject_is_a_bug() -> None:
    sink = SINKS["analytics"]
    with pytest.raises(ValueError, match="subject"):
        project(event(at(1), subject=None), sink, evidence_for(sink), KEYS)


def test_reserved_names_are_what_projection_adds() -> None:
    assert ADDED <= RESERVED_FIELDS


def test_key_names_needed_by_a_policy() -> None:
    assert pseudonym_key_names(POLICY.sinks) == {FIRST_PARTY, "acme-corp", "beta-inc"}


# --- keys ----------------------------------------------------------------------------------


def test_keys_from_environment_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSENTGATE_PSEUDONYM_KEYS", '{"acme-corp": "0123456789abcdef0123"}')
    monkeypatch.delenv("CONSENTGATE_PSEUDONYM_MASTER_KEY", raising=False)
    keys = PseudonymKeys.from_settings()
    assert keys.key_for("acme-corp") == b"0123456789abcdef0123"
    with pytest.raises(ConfigError, match="no pseudonym key for 'beta-inc'"):
        keys.key_for("beta-inc")
    assert "0123456789" not in repr(keys)


def test_master_key_derives_a_key_per_recipient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSENTGATE_PSEUDONYM_MASTER_KEY", "master-secret-0123456789")
    monkeypatch.setenv("CONSENTGATE_PSEUDONYM_KEYS", '{"acme-corp": "explicit-key-0123456789"}')
    keys = PseudonymKeys.from_settings(PseudonymSettings())
    assert keys.key_for("acme-corp") == b"explicit-key-0123456789"  # explicit wins
    beta, gamma = keys.key_for("beta-inc"), keys.key_for("gamma")
    assert len(beta) == 32 and beta != gamma
    again = PseudonymKeys(master_key=SecretStr("master-secret-0123456789"))
    assert again.pseudonym("beta-inc", SUBJECT) == keys.pseudonym("beta-inc", SUBJECT)


def test_empty_or_short_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        PseudonymKeys({"acme-corp": SecretStr("")}).pseudonym("acme-corp", SUBJECT)
    with pytest.raises(ConfigError, match="MASTER_KEY"):
        PseudonymKeys(master_key=SecretStr("short")).key_for("acme-corp")
    with pytest.raises(ConfigError) as failure:
        PseudonymKeys({"a": SecretStr("x")}).check(["a", "b"])
    assert "'a'" in str(failure.value) and "'b'" in str(failure.value)
    KEYS.check(pseudonym_key_names(POLICY.sinks))


def test_hkdf_matches_rfc5869_test_case_1() -> None:
    okm = hkdf_sha256(
        bytes.fromhex("0b" * 22),
        salt=bytes.fromhex("000102030405060708090a0b0c"),
        info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        length=42,
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
