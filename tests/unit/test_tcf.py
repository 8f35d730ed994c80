"""The TCF adapter: TC strings -> TcSignal -> grant states, and the policy's tcf mapping."""

from __future__ import annotations

import contextlib
import string
from datetime import UTC, datetime
from pathlib import Path

import iab_tcf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentgate.consent import tcf
from consentgate.consent.tcf import MAX_TC_STRING_LENGTH, TcfError, TcSignal, decode, grant_states
from consentgate.errors import PolicyError, ValidationError
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod
from consentgate.policy import Policy, parse_policy
from tests.unit.policy_fixtures import POLICY, POLICY_YAML
from tests.unit.tcf_encode import CREATED, TcCore, bits_to_base64url, core_bits, encode

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "policy.yaml"

ACME, BETA = 755, 1024
TCF_YAML = f"""
tcf:
  purposes:
    analytics: [1, 8, 9]
    partner_sharing: [1, 3, 4]
  vendors:
    acme-corp: {ACME}
"""
# Fixture policy keys, in order: (analytics, -), (partner_sharing, acme-corp),
# (partner_sharing, beta-inc), (profiling, acme-corp), (profiling, -). beta-inc has no vendor
# id and profiling no TCF purposes: those keys are not TCF's to decide.
TCF_POLICY: Policy = parse_policy(POLICY_YAML + TCF_YAML, origin="tcf-policy").policy
ALL = frozenset(range(1, 12))

# Real-world strings from the iab-tcf repository (README and tests/seed/v2, tests/seed/v1).
README_V2 = "CO5VTlWO5VTlWH1AAAENAwCwAIAAAAAAAIAAAAoAAAAA.YAAAAAAAAAA"
SEED_V2_B = (
    "COxR03kOxR1CqBcABCENAgCMAP_AAH_AAAqIF3EXySoGY2thI2YVFxBEIYwfJxyigMgChgQIsSwNQIeFLBoGLiAAHBGYJ"
    "AQAGBAEEACBAQIkHGBMCQAAgAgBiRCMQEGMCzNIBIBAggEbY0FACCVmHkHSmZCY7064O__QLuIJEFQMAkSBAIACLECIQw"
    "AQDiAAAYAlAAABAhIaAAgIWBQEeAAAACAwAAgAAABBAAACAAQAAICIAAABAAAgAiAQAAAAGgIQAACBABACRIAAAEANCAAgi"
    "CEAQg4EAo4AAA"
)
SEED_V2_B_VENDORS = (2, 6, 8, 9, 10, 11, 12, 15, 18, 21, 23, 25, 32, 746, 747, 748, 750)
SEED_V2_B_NOT = (1, 3, 4, 5, 7, 13, 14, 16, 17, 19, 20, 22, 24, 26, 749)
# tests/seed/v2/consent_d.json (iab-tcf issue #10): its vendor legitimate interest section
# declares MaxVendorId 57378 in a 2040-bit core segment. The library reads the missing bits
# as zeros; we refuse it.
SEED_V2_D = (
    "CPIKj1vPPdzL-ACAnAFRBACsAP_AAH_AAAqIHFNf_X_fb3_j-_59_9t0eY1f9_7_v20zjgeds-8Nyd_X_L8X4mM7vB36"
    "pq4KuR4Eu3LBAQdlHOHcTUmw6IkVqTPsbk2Mr7NKJ7PEinMbe2dYGH9_n9XTuZKY79_s_z-v7_f_r-3_3_vp9V---wOJ"
    "AJMNS-AizEscCSaNKoUQIQriQ6AEAFFCMLRNYQErgp2VwEfoIGACA1ARgRAgxBRiyCAAAAAJKIgJADwQCIAiAQAAgBUgIQ"
    "AEaAILACQMAgAFANCwAigCECQgyOCo5TAgIkWignkrAEou9jDCEMooAaBAAAAA"
)
SEED_V1_A = (
    "BOlLbqtOlLbqtAVABADECg-AAAApp7v______9______9uz_Ov_v_f__33e8__9v_l_7_-___u_-3zd4u_1vf99yfm1"
    "-7etr3tp_87ues2_Xur__79__3z3_9phP78k89r7337Ew-v02"
)


def signal(**fields: object) -> TcSignal:
    return decode(encode(**fields))


# -- the test encoder and real strings -----------------------------------------------------


@pytest.mark.parametrize("range_encoding", [False, True])
def test_iab_tcf_decodes_what_the_encoder_encodes(range_encoding: bool) -> None:
    core = TcCore(
        created=datetime(2024, 11, 5, 8, 0, 1, tzinfo=UTC),
        last_updated=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        cmp_id=300,
        cmp_version=41,
        consent_screen=5,
        consent_language="DE",
        vendor_list_version=97,
        policy_version=5,
        special_feature_optins=frozenset({1}),
        purpose_consents=frozenset({1, 3, 11}),
        purpose_li_transparency=frozenset({2, 7}),
        purpose_one_treatment=True,
        publisher_cc="FR",
        vendor_consents=frozenset({1, 2, 3, 40, 700}),
        vendor_li=frozenset({5, 6}),
        range_encoding=range_encoding,
    )
    c = iab_tcf.decode_v2(encode(core))
    assert (c.version, c.cmp_id, c.cmp_version, c.consent_screen) == (2, 300, 41, 5)
    assert (c.consent_language, c.publisher_cc, c.vendor_list_version) == (b"DE", b"FR", 97)
    assert (c.tcf_policy_version, c.is_service_specific, c.use_non_standard_stacks) == (5, 1, 0)
    assert c.created == datetime(2024, 11, 5, 8, 0, 1)
    assert c.last_updated == datetime(2025, 1, 2, 3, 4, 5)
    assert [i for i, on in c.special_features_optin.items() if on] == [1]
    assert [i for i in range(1, 25) if c.is_purpose_allowed(i)] == [1, 3, 11]
    assert [i for i in range(1, 25) if c.has_purpose_legitimate_interest(i)] == [2, 7]
    assert c.purpose_one_treatment
    assert c.max_consent_vendor_id == 700 and c.is_consent_range_encoding is range_encoding
    assert [i for i in range(1, 701) if c.is_vendor_allowed(i)] == [1, 2, 3, 40, 700]
    assert [i for i in range(1, 10) if c.is_interest_allowed(i)] == [5, 6]
    assert c.num_pub_restrictions == 0
    assert c._reader._pointer == len(core_bits(core))


def test_a_real_v2_string_from_the_library_readme() -> None:
    s = decode(README_V2)
    assert s == TcSignal(
        version=2,
        policy_version=2,
        created=datetime(2020, 9, 6, 21, 20, 8, tzinfo=UTC),
        last_updated=datetime(2020, 9, 6, 21, 20, 8, tzinfo=UTC),
        cmp_id=501,
        cmp_version=0,
        consent_language="EN",
        vendor_list_version=48,
        purpose_consents=frozenset({1}),
        vendor_consents=frozenset({1}),
        is_service_specific=True,
    )


def test_a_real_v2_string_from_the_library_tests() -> None:
    s = decode(SEED_V2_B)
    assert (s.version, s.policy_version, s.cmp_id, s.cmp_version) == (2, 2, 92, 1)
    assert (s.consent_language, s.vendor_list_version, s.is_service_specific) == ("EN", 32, False)
    assert s.created == datetime(2020, 4, 3, 11, 43, 31, tzinfo=UTC)
    assert s.last_updated == datetime(2020, 4, 3, 11, 44, 42, tzinfo=UTC)
    assert s.purpose_consents == frozenset(range(1, 11))
    assert set(SEED_V2_B_VENDORS) <= s.vendor_consents
    assert not set(SEED_V2_B_NOT) & s.vendor_consents
    assert max(s.vendor_consents) == 750


@pytest.mark.parametrize("tc_string", [README_V2, SEED_V2_B])
def test_real_tcf_v2_0_strings_are_refused_by_grant_states(tc_string: str) -> None:
    with pytest.raises(TcfError, match=r"^TCF policy version 2 is older than v2.2 \(needs >= 4\)$"):
        grant_states(decode(tc_string), TCF_POLICY)


def test_a_real_string_whose_fields_overrun_it_is_refused() -> None:
    assert iab_tcf.decode_v2(SEED_V2_D).max_interests_vendor_id == 57378  # no error there
    with pytest.raises(TcfError, match="truncated"):
        decode(SEED_V2_D)


# -- decode --------------------------------------------------------------------------------


def test_a_v2_2_string_becomes_its_signal() -> None:
    s = signal(
        created=CREATED,
        last_updated=datetime(2025, 3, 15, 0, 0, 7, tzinfo=UTC),
        cmp_id=7,
        cmp_version=3,
        consent_language="JA",
        vendor_list_version=120,
        policy_version=4,
        is_service_specific=True,
        purpose_consents=frozenset({1, 8, 9}),
        purpose_li_transparency=frozenset({2}),
        vendor_consents=frozenset({ACME, 9}),
        vendor_li=frozenset({BETA}),
    )
    assert s == TcSignal(
        version=2,
        policy_version=4,
        created=CREATED,
        last_updated=datetime(2025, 3, 15, 0, 0, 7, tzinfo=UTC),
        cmp_id=7,
        cmp_version=3,
        consent_language="JA",
        vendor_list_version=120,
        purpose_consents=frozenset({1, 8, 9}),
        vendor_consents=frozenset({9, ACME}),
        is_service_specific=True,
    )
    assert s.created.tzinfo is UTC


def test_range_encoded_vendor_consents() -> None:
    vendors = frozenset({1, 2, 3, 4, 50, ACME, ACME + 1, 9000})
    assert signal(vendor_consents=vendors, range_encoding=True).vendor_consents == vendors


def test_other_segments_are_ignored() -> None:
    core = encode(purpose_consents=frozenset({1}))
    assert decode(f"{core}.YAAAAAAAAAA.IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAg") == decode(core)


def _with_bits(bits: str, at: int, value: int, width: int) -> str:
    return bits[:at] + format(value, f"0{width}b") + bits[at + width :]


VENDOR_SECTION = 213  # bit offset of MaxVendorId in the core segment


def test_a_vendor_range_beyond_max_vendor_id_is_refused() -> None:
    bits = core_bits(TcCore(vendor_consents=frozenset({10, 11, 12}), range_encoding=True))
    lying = _with_bits(bits, VENDOR_SECTION, 11, 16)  # MaxVendorId 11, range 10-12
    with pytest.raises(TcfError, match=r"vendor consent range 10-12 is not within 1\.\.11"):
        decode(bits_to_base64url(lying))


def test_a_consent_language_that_is_not_letters_is_refused() -> None:
    bits = core_bits(TcCore())
    odd = _with_bits(bits, 6 + 36 + 36 + 12 + 12 + 6, 40, 6)  # 40 -> 'i'
    with pytest.raises(TcfError, match="consent language") as failure:
        decode(bits_to_base64url(odd))
    assert failure.value.path == "tcf_string.consent_language"


VALID = encode(purpose_consents=ALL, vendor_consents=frozenset({ACME}))


@pytest.mark.parametrize(
    ("tc_string", "message"),
    [
        (None, "^a TC string must be a str, not NoneType$"),
        (VALID.encode(), "^a TC string must be a str, not bytes$"),
        ("", "^the TC string is empty$"),
        ("C" * (MAX_TC_STRING_LENGTH + 4), r"^the TC string is 10004 characters long"),
        (VALID[:10] + "!" + VALID[11:], "^segment 0 of the TC string is not valid base64url$"),
        (VALID[:10] + "+/" + VALID[12:], "^segment 0 of the TC string is not valid base64url$"),
        (VALID + "==", "^segment 0 of the TC string is not valid base64url$"),
        (VALID + ".", "^segment 1 of the TC string is not valid base64url$"),
        ("." + VALID, "^segment 0 of the TC string is not valid base64url$"),
        ("CPc", "^the TC string is truncated"),  # valid base64url of 2 bytes, version 2
        ("C", "not valid base64url"),  # 4n+1 characters cannot be base64 of anything
        (VALID[: len(VALID) // 8 * 4], "^the TC string is truncated"),
        (VALID[:-4], "^the TC string is truncated"),
        (SEED_V1_A, "^TCF v1 strings are not supported$"),
        (encode(version=1), "^TCF v1 strings are not supported$"),
        (encode(version=3), "^unknown TCF version 3$"),
        (encode(version=0), "^unknown TCF version 0$"),
        ("AAAA", "^unknown TCF version 0$"),
    ],
    ids=lambda v: repr(v)[:24] if isinstance(v, str | bytes | None) else None,
)
def test_unusable_strings_are_refused(tc_string: str, message: str) -> None:
    with pytest.raises(TcfError, match=message) as failure:
        decode(tc_string)
    assert "\n" not in str(failure.value)
    assert isinstance(failure.value, ValidationError)
    assert failure.value.path.startswith("tcf_string")


def test_a_too_long_string_is_not_kept_whole_in_the_error() -> None:
    with pytest.raises(TcfError) as failure:
        decode("C" * 20_000)
    assert isinstance(failure.value.value, str) and len(failure.value.value) < 100


@pytest.mark.parametrize("raised", [IndexError("bit 9"), ValueError("bad"), KeyError(3)])
def test_whatever_the_library_raises_becomes_a_tcf_error(
    monkeypatch: pytest.MonkeyPatch, raised: Exception
) -> None:
    def broken(_: str) -> object:
        raise raised

    monkeypatch.setattr(tcf.iab_tcf, "decode_v2", broken)
    with pytest.raises(TcfError, match=r"^the TC string cannot be decoded: ") as failure:
        decode(VALID)
    assert failure.value.__cause__ is raised
    assert "\n" not in str(failure.value)


B64URL = string.ascii_letters + string.digits + "-_"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=B64URL + ".", min_size=1, max_size=120))
def test_arbitrary_base64url_text_never_escapes_as_another_error(text: str) -> None:
    with contextlib.suppress(TcfError):
        decode(text)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(VALID) - 1), st.sampled_from(B64URL), st.integers(0, len(VALID)))
def test_corrupted_valid_strings_decode_or_fail_as_tcf_errors(at: int, char: str, cut: int) -> None:
    text = (VALID[:at] + char + VALID[at + 1 :])[: max(cut, 1)]
    try:
        s = decode(text)
    except TcfError:
        return
    assert s.version == 2 and s.purpose_consents <= frozenset(range(1, 25))


# -- grant_states --------------------------------------------------------------------------


def test_full_consent_grants_every_covered_key() -> None:
    states = grant_states(signal(purpose_consents=ALL, vendor_consents={ACME}), TCF_POLICY)
    assert states == [(("analytics", None), True), (("partner_sharing", "acme-corp"), True)]


def test_without_the_vendor_only_first_party_keys_are_granted() -> None:
    states = grant_states(signal(purpose_consents=ALL, vendor_consents={1, 2, BETA}), TCF_POLICY)
    assert states == [(("analytics", None), True), (("partner_sharing", "acme-corp"), False)]


def test_partial_purpose_consent_grants_nothing_it_does_not_fully_cover() -> None:
    # analytics needs 1, 8 and 9; partner_sharing 1, 3 and 4.
    s = signal(purpose_consents={1, 3, 4, 8}, vendor_consents={ACME})
    assert grant_states(s, TCF_POLICY) == [
        (("analytics", None), False),
        (("partner_sharing", "acme-corp"), True),
    ]
    s = signal(purpose_consents={1, 8, 9, 3}, vendor_consents={ACME})
    assert grant_states(s, TCF_POLICY) == [
        (("analytics", None), True),
        (("partner_sharing", "acme-corp"), False),
    ]


def test_no_consent_withdraws_every_covered_key() -> None:
    states = grant_states(signal(), TCF_POLICY)
    assert states == [(("analytics", None), False), (("partner_sharing", "acme-corp"), False)]


def test_uncovered_keys_are_left_out() -> None:
    states = dict(grant_states(signal(purpose_consents=ALL, vendor_consents={ACME}), TCF_POLICY))
    keys = {(p, k.recipient) for k in TCF_POLICY.sinks for p in (k.purpose, *k.extra_purposes)}
    assert len(keys) == 5
    assert ("partner_sharing", "beta-inc") not in states  # recipient without a vendor id
    assert ("profiling", "acme-corp") not in states  # purpose without TCF purposes
    assert ("profiling", None) not in states


def test_keys_follow_policy_order_without_duplicates() -> None:
    everything = """
tcf:
  purposes:
    analytics: [1, 8, 9]
    partner_sharing: [1, 3, 4]
    profiling: [3]
  vendors:
    acme-corp: 755
    beta-inc: 1024
"""
    policy = parse_policy(POLICY_YAML + everything).policy
    states = grant_states(signal(purpose_consents=ALL, vendor_consents={ACME}), policy)
    assert states == [
        (("analytics", None), True),  # analytics and site_counts: one key
        (("partner_sharing", "acme-corp"), True),  # browsing and scores sinks: one key
        (("partner_sharing", "beta-inc"), False),
        (("profiling", "acme-corp"), True),  # the scores sink's extra purpose
        (("profiling", None), True),
    ]


@pytest.mark.parametrize("policy_version", [0, 1, 2, 3])
def test_strings_older_than_v2_2_are_refused(policy_version: int) -> None:
    s = signal(purpose_consents=ALL, vendor_consents={ACME}, policy_version=policy_version)
    with pytest.raises(TcfError, match=f"^TCF policy version {policy_version} is older") as fail:
        grant_states(s, TCF_POLICY)
    assert fail.value.path == "tcf_string.policy_version"
    assert fail.value.value == policy_version


def test_min_policy_version_is_the_policys() -> None:
    stricter = parse_policy(POLICY_YAML + TCF_YAML + "  min_policy_version: 5\n").policy
    with pytest.raises(TcfError, match=r"\(needs >= 5\)"):
        grant_states(signal(policy_version=4), stricter)
    assert grant_states(signal(policy_version=5), stricter)


def test_a_policy_without_tcf_mapping_refuses() -> None:
    with pytest.raises(TcfError, match=r"^the policy has no tcf mapping$") as failure:
        grant_states(signal(purpose_consents=ALL), POLICY)
    assert failure.value.path == "policy.tcf"


def test_states_become_valid_tcf_changes() -> None:
    tc_string = encode(purpose_consents={1, 8, 9}, vendor_consents={ACME})
    for (purpose, recipient), granted in grant_states(decode(tc_string), TCF_POLICY):
        change = ConsentChange(
            change_id=f"c.{purpose}.{recipient}",
            subject_id="s-1",
            action=ConsentAction.GRANT if granted else ConsentAction.WITHDRAW,
            purpose=purpose,
            recipient=recipient,
            effective_time=CREATED,
            recorded_time=CREATED,
            method=ConsentMethod.TCF,
            tcf_string=tc_string,
        )
        assert change.grant_key == (purpose, recipient)


def test_the_deploy_policy_maps_first_party_and_every_partner() -> None:
    policy = parse_policy(DEPLOY.read_text(encoding="utf-8")).policy
    assert policy.tcf is not None
    everyone = frozenset(policy.tcf.vendors.values())
    states = grant_states(
        signal(purpose_consents={1, 3, 4, 8, 9}, vendor_consents=everyone), policy
    )
    assert states[0] == (("analytics", None), True)
    partners = {k.recipient for k in policy.sinks if k.recipient is not None}
    assert {key for key, _ in states[1:]} == {("partner_sharing", r) for r in partners}
    assert all(granted for _, granted in states)
    assert ("profiling", "hoshino-electric") not in dict(states)  # our own form only


# -- the policy's tcf section --------------------------------------------------------------


def test_a_policy_without_tcf_keeps_its_version() -> None:
    # The version hashes the dump: a policy without a tcf section dumps as it did before
    # the section existed, so its version (stamped on routed records) does not change.
    assert "tcf" not in POLICY.model_dump(mode="json", by_alias=True)
    assert Policy.model_validate({**POLICY.model_dump(), "tcf": None}).version == POLICY.version
    assert TCF_POLICY.version != POLICY.version


BROKEN_TCF: list[tuple[str, str, str]] = [
    (
        "undeclared purpose",
        "tcf:\n  purposes: {marketing: [1]}\n",
        "tcf.purposes.marketing: purpose 'marketing' is not declared under purposes",
    ),
    (
        "undeclared recipient",
        "tcf:\n  purposes: {analytics: [1]}\n  vendors: {nobody: 3}\n",
        "tcf.vendors.nobody: 'nobody' is not a declared recipient",
    ),
    (
        "TCF purpose 0",
        "tcf:\n  purposes: {analytics: [1, 0]}\n",
        "tcf.purposes.analytics[1]: TCF purpose 0 is not within 1..11",
    ),
    (
        "TCF purpose 12",
        "tcf:\n  purposes: {analytics: [12]}\n",
        "tcf.purposes.analytics[0]: TCF purpose 12 is not within 1..11",
    ),
    (
        "TCF purpose listed twice",
        "tcf:\n  purposes: {analytics: [1, 8, 1]}\n",
        "tcf.purposes.analytics: a TCF purpose is listed twice",
    ),
    (
        "vendor id 0",
        "tcf:\n  purposes: {analytics: [1]}\n  vendors: {acme-corp: 0}\n",
        "tcf.vendors.acme-corp: vendor id 0 is not within 1..65535",
    ),
    (
        "vendor id beyond 16 bits",
        "tcf:\n  purposes: {analytics: [1]}\n  vendors: {acme-corp: 65536}\n",
        "tcf.vendors.acme-corp: vendor id 65536 is not within 1..65535",
    ),
    (
        "two recipients, one vendor id",
        "tcf:\n  purposes: {analytics: [1]}\n  vendors: {acme-corp: 7, beta-inc: 7}\n",
        "tcf.vendors.beta-inc: vendor id 7 is also mapped to acme-corp",
    ),
    (
        "no TCF purposes",
        "tcf:\n  purposes: {analytics: []}\n",
        "tcf.purposes.analytics: Tuple should have at least 1 item",
    ),
    (
        "no purposes section",
        "tcf:\n  vendors: {acme-corp: 7}\n",
        "tcf.purposes: Field required",
    ),
    (
        "unknown key",
        "tcf:\n  purposes: {analytics: [1]}\n  vendor: {acme-corp: 7}\n",
        "tcf.vendor: Extra inputs are not permitted",
    ),
]


@pytest.mark.parametrize(
    ("section", "message"), [b[1:] for b in BROKEN_TCF], ids=[b[0] for b in BROKEN_TCF]
)
def test_broken_tcf_mappings_fail_naming_the_entry(section: str, message: str) -> None:
    with pytest.raises(PolicyError) as failure:
        parse_policy(POLICY_YAML + section, origin="broken.yaml")
    lines = str(failure.value).splitlines()
    assert any(line.startswith(f"broken.yaml: {message}") for line in lines), lines


def test_every_tcf_problem_is_reported_at_once() -> None:
    section = "tcf:\n  purposes: {ads: [0, 13]}\n  vendors: {nobody: 0}\n"
    with pytest.raises(PolicyError) as failure:
        parse_policy(POLICY_YAML + section)
    assert len(str(failure.value).splitlines()) == 5


def test_a_valid_mapping_has_no_findings() -> None:
    without = parse_policy(POLICY_YAML).warnings
    assert parse_policy(POLICY_YAML + TCF_YAML).warnings == without
    assert TCF_POLICY.tcf is not None
    assert TCF_POLICY.tcf.min_policy_version == 4
