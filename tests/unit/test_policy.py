"""The policy file: deploy/policy.yaml is valid; broken variants fail naming the entry."""

from __future__ import annotations

import copy
import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from consentgate.errors import PolicyError
from consentgate.policy import SubjectHandling, check_policy, load_policy, parse_policy
from consentgate.policy.load import schema_fields

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "policy.yaml"
SCHEMAS = schema_fields()
BASE: dict[str, Any] = yaml.safe_load(DEPLOY.read_text(encoding="utf-8"))


def variant(mutate: Callable[[dict[str, Any]], object]) -> str:
    data = copy.deepcopy(BASE)
    mutate(data)
    return yaml.safe_dump(data, sort_keys=False)


def sink(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in data["sinks"] if s["name"] == name)


KAEDE = "partner.kaede-trading.browsing"
SCORES = "partner.hoshino-electric.scores"


def test_deploy_policy_is_valid_and_fits_the_case() -> None:
    checked = check_policy(DEPLOY, schemas=SCHEMAS)
    assert checked.warnings == ()
    policy = checked.policy
    assert re.fullmatch(r"[0-9a-f]{12}", policy.version)
    assert {s.topic for s in policy.sources} == {
        "events.browsing.raw.v1",
        "scores.offer_decline.raw.v1",
    }
    analytics = policy.sink("analytics")
    assert (analytics.topic, analytics.purpose, analytics.recipient) == (
        "events.browsing.analytics.v1",
        "analytics",
        None,
    )
    assert analytics.subject_id is SubjectHandling.PSEUDONYMIZE
    partners = [k for k in policy.sinks_for("browsing") if k.is_partner]
    assert len({k.recipient for k in partners}) >= 5
    for k in partners:
        assert k.topic == f"partner.{k.recipient}.browsing.v1"
        assert k.purpose == "partner_sharing" and "gpc" in k.opt_out_signals
        assert k.subject_id is SubjectHandling.PSEUDONYMIZE
    scores = [k for k in policy.sinks_for("decline_scores") if k.is_partner]
    assert scores and all(
        k.grant_key == ("partner_sharing", k.recipient) and "profiling" in k.extra_purposes
        for k in scores
    )
    assert load_policy(DEPLOY, schemas=SCHEMAS) == policy


def test_version_is_a_hash_of_the_content_not_the_text() -> None:
    version = check_policy(DEPLOY, schemas=SCHEMAS).policy.version
    reordered = yaml.safe_dump(dict(reversed(list(BASE.items()))), sort_keys=True)
    assert parse_policy(reordered, schemas=SCHEMAS).policy.version == version
    no_defaults = variant(lambda d: d["defaults"].pop("clock_skew_seconds"))  # 30 = default
    assert parse_policy(no_defaults, schemas=SCHEMAS).policy.version == version
    changed = variant(lambda d: sink(d, KAEDE)["fields"].remove("job_id"))
    assert parse_policy(changed, schemas=SCHEMAS).policy.version != version


BROKEN: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    (
        "unknown recipient",
        lambda d: sink(d, KAEDE).update(recipient="nobody"),
        "sinks[1] (partner.kaede-trading.browsing).recipient: 'nobody' is not a declared recipient",
    ),
    (
        "unknown source",
        lambda d: sink(d, KAEDE).update(source="clicks"),
        "sinks[1] (partner.kaede-trading.browsing).source: 'clicks' is not a declared source",
    ),
    (
        "undeclared purpose",
        lambda d: sink(d, "analytics").update(purpose="marketing"),
        "sinks[0] (analytics).purpose: purpose 'marketing' is not declared",
    ),
    (
        "undeclared extra purpose",
        lambda d: sink(d, SCORES).update(extra_purposes=["profiling", "ads"]),
        f"({SCORES}).extra_purposes[1]: purpose 'ads' is not declared",
    ),
    (
        "field the schema lacks",
        lambda d: sink(d, KAEDE)["fields"].append("salary"),
        "sinks[1] (partner.kaede-trading.browsing).fields[5]: "
        "dev.consentgate.v1.BrowsingEvent has no field 'salary'",
    ),
    (
        "raw subject id as a field",
        lambda d: sink(d, KAEDE)["fields"].append("subject_id"),
        "fields[5]: the raw subject id is not a field",
    ),
    (
        "reserved field",
        lambda d: sink(d, "analytics")["fields"].append("purpose"),
        "sinks[0] (analytics).fields[9]: 'purpose' is reserved",
    ),
    (
        "duplicate sink name",
        lambda d: sink(d, KAEDE).update(name="analytics"),
        "sinks[1].name: duplicate name 'analytics'",
    ),
    (
        "duplicate sink topic",
        lambda d: sink(d, KAEDE).update(topic="events.browsing.analytics.v1"),
        "sinks[1].topic: duplicate topic",
    ),
    (
        "sink writing to a source topic",
        lambda d: sink(d, "analytics").update(topic="events.browsing.raw.v1"),
        "sinks[0] (analytics).topic: 'events.browsing.raw.v1' is a source topic",
    ),
    (
        "keep_if_named_recipient on a first-party sink",
        lambda d: sink(d, "analytics").update(subject_id="keep_if_named_recipient"),
        "sinks[0] (analytics).subject_id: keep_if_named_recipient needs a recipient",
    ),
    (
        "partner sink without its recipient",
        lambda d: sink(d, KAEDE).pop("recipient"),
        "sinks[1] (partner.kaede-trading.browsing).recipient: missing; purpose "
        "'partner_sharing' is a partner purpose",
    ),
    (
        "opt-out signal the source cannot raise",
        lambda d: sink(d, SCORES).update(opt_out_signals=["gpc"]),
        f"({SCORES}).opt_out_signals[0]: source decline_scores raises no signal 'gpc'",
    ),
    (
        "signal field the schema lacks",
        lambda d: d["sources"][0]["signal_fields"].update(dnt="do_not_track"),
        "sources[0] (browsing).signal_fields.dnt: dev.consentgate.v1.BrowsingEvent has no field",
    ),
    (
        "no fields",
        lambda d: sink(d, KAEDE).update(fields=[]),
        "sinks[1] (partner.kaede-trading.browsing).fields: Tuple should have at least 1 item",
    ),
    (
        "unknown subject handling",
        lambda d: sink(d, "analytics").update(subject_id="hash"),
        "sinks[0] (analytics).subject_id: Input should be 'drop', 'pseudonymize'",
    ),
    (
        "unbounded consent wait",
        lambda d: d["defaults"].update(consent_wait_seconds=3600),
        "defaults.consent_wait_seconds: Input should be less than or equal to 300",
    ),
    (
        "unknown key",
        lambda d: sink(d, KAEDE).update(recipent="kaede-trading"),
        "sinks[1] (partner.kaede-trading.browsing).recipent: Extra inputs are not permitted",
    ),
    (
        "bad country",
        lambda d: d["recipients"][2].update(country="Japan"),
        "recipients[2] (minato-bank).country: String should match pattern",
    ),
    (
        "no sinks",
        lambda d: d.update(sinks=[]),
        "sinks: Tuple should have at least 1 item",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_policies_fail_naming_the_entry(
    mutate: Callable[[dict[str, Any]], object], message: str
) -> None:
    with pytest.raises(PolicyError) as failure:
        parse_policy(variant(mutate), origin="broken.yaml", schemas=SCHEMAS)
    assert message in str(failure.value)
    assert str(failure.value).startswith("broken.yaml: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sinks: [\n", "not valid YAML"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("purposes: {a: x}\npurposes: {b: y}\n", "duplicate key 'purposes'"),
    ],
)
def test_unreadable_policy_text(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(message)):
        parse_policy(text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(tmp_path / "absent.yaml")


def test_every_problem_is_reported_at_once() -> None:
    def two_problems(d: dict[str, Any]) -> None:
        sink(d, KAEDE).update(recipient="nobody")
        sink(d, "analytics").update(purpose="marketing")

    with pytest.raises(PolicyError) as failure:
        parse_policy(variant(two_problems), schemas=SCHEMAS)
    assert len(str(failure.value).splitlines()) == 2


def test_warnings() -> None:
    def risky(d: dict[str, Any]) -> None:
        sink(d, "analytics").update(subject_id="drop")
        sink(d, KAEDE).update(subject_id="keep_if_named_recipient", opt_out_signals=[])
        sink(d, KAEDE)["fields"].append("ip_address")

    warnings = parse_policy(variant(risky), schemas=SCHEMAS).warnings
    assert warnings == (
        "sinks[0] (analytics): subject_id drop: not retractable per subject "
        "(withdrawal stops new data only)",
        f"sinks[1] ({KAEDE}): raw subject ids go to kaede-trading (identifiable provision)",
        f"sinks[1] ({KAEDE}): partner sink honours none of ['gpc']",
        f"sinks[1] ({KAEDE}): personal fields go to kaede-trading: ip_address",
    )


def test_without_schemas_fields_are_not_checked() -> None:
    text = variant(lambda d: sink(d, KAEDE)["fields"].append("salary"))
    assert parse_policy(text).policy.sink(KAEDE).fields[-1] == "salary"
    unknown = variant(lambda d: d["sources"][1].update(schema="dev.consentgate.v1.Nope"))
    assert parse_policy(unknown, schemas=SCHEMAS).warnings == (
        "sources[1] (decline_scores).schema: schema 'dev.consentgate.v1.Nope' not found",
    )


@pytest.mark.parametrize("module", ["consentgate.policy", "consentgate.consent"])
def test_public_api_is_explicit_and_sorted(module: str) -> None:
    package = importlib.import_module(module)
    names = package.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    assert all(hasattr(package, name) for name in names)
