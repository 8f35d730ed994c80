"""deploy/topics.yaml: validation and resolution (no broker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from consentgate.errors import ConfigError
from consentgate.ops.topics_spec import load_spec, parse_spec, policy_sink_topics

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def spec_data(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": 1,
        "defaults": {"partitions": 3, "replication_factor": 1},
        "copartition": {"keyed": {"partitions": 6, "topics": ["raw", "state"]}},
        "topics": {
            "raw": {"config": {"retention.ms": 1000}},
            "state": {"config": {"cleanup.policy": "compact"}},
            "other": {},
        },
    }
    data.update(extra)
    return data


def test_copartition_members_take_the_group_count() -> None:
    spec = parse_spec(spec_data())
    assert spec.topics["raw"].partitions == 6
    assert spec.topics["state"].partitions == 6
    assert spec.topics["other"].partitions == 3  # default
    assert spec.copartition == {"keyed": ["raw", "state"]}


def test_config_values_become_kafka_strings() -> None:
    data = spec_data()
    data["topics"]["other"] = {"config": {"retention.ms": 5, "preallocate": True}}
    spec = parse_spec(data)
    assert spec.topics["raw"].config == {"retention.ms": "1000"}
    assert spec.topics["other"].config == {"retention.ms": "5", "preallocate": "true"}


def test_member_with_other_partition_count_is_rejected() -> None:
    data = spec_data()
    data["topics"]["state"]["partitions"] = 3
    with pytest.raises(ConfigError, match=r"'state' declares 3 partitions.*'keyed' has 6"):
        parse_spec(data)


def test_group_naming_an_undeclared_topic_is_rejected() -> None:
    data = spec_data()
    data["copartition"]["keyed"]["topics"].append("ghost")
    with pytest.raises(ConfigError, match="undeclared topic 'ghost'"):
        parse_spec(data)


@pytest.mark.parametrize(
    "bad",
    [
        {"version": 2},
        {"topics": {"x": {"partitions": 0}}},
        {"topics": {"x": {"unknown": 1}}},
        {"topics": {"bad name!": {}}},
    ],
)
def test_invalid_files_are_config_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse_spec({**spec_data(copartition={}), **bad})


def test_sinks_from_policy(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(
        yaml.safe_dump(
            {
                "sinks": [
                    {"name": "a", "topic": "partner.a.browsing.v1"},
                    {"name": "raw-again", "topic": "raw"},
                ]
            }
        )
    )
    data = spec_data(
        sinks_from_policy={"file": "policy.yaml", "template": {"config": {"retention.ms": 7}}}
    )
    (tmp_path / "topics.yaml").write_text(yaml.safe_dump(data))
    spec = load_spec(tmp_path / "topics.yaml")
    assert spec.topics["partner.a.browsing.v1"].config == {"retention.ms": "7"}
    assert spec.topics["raw"].config == {"retention.ms": "1000"}  # explicit wins


def test_missing_policy_is_an_error_unless_optional(tmp_path: Path) -> None:
    data = spec_data(sinks_from_policy={"file": "nope.yaml"})
    with pytest.raises(ConfigError, match=r"cannot read .*nope\.yaml"):
        parse_spec(data, base_dir=tmp_path)
    data = spec_data(sinks_from_policy={"file": "nope.yaml", "required": False})
    assert set(parse_spec(data, base_dir=tmp_path).topics) == {"raw", "state", "other"}


def test_policy_sinks_as_mapping_or_list() -> None:
    assert policy_sink_topics({"sinks": {"a": {"topic": "x"}}}) == ["x"]
    assert policy_sink_topics({"sinks": [{"topic": "y"}]}) == ["y"]
    with pytest.raises(ConfigError):
        policy_sink_topics({"sinks": [{"name": "no topic"}]})
    with pytest.raises(ConfigError):
        policy_sink_topics({})


def test_repository_topics_file() -> None:
    path = REPO / "deploy" / "topics.yaml"
    data = yaml.safe_load(path.read_text())
    if not (path.parent / data["sinks_from_policy"]["file"]).exists():
        data["sinks_from_policy"]["required"] = False  # the policy file is written elsewhere
    spec = parse_spec(data, base_dir=path.parent)
    topics = spec.topics
    for name in [
        "events.browsing.raw.v1",
        "scores.offer_decline.raw.v1",
        "consent.changes.v1",
        "consent.state.v1",
        "events.browsing.analytics.v1",
        "consentgate.decisions.v1",
        "consentgate.provisions.v1",
        "consentgate.dlq.v1",
    ]:
        assert name in topics
    assert topics["consent.state.v1"].config["cleanup.policy"] == "compact"
    assert int(topics["consentgate.provisions.v1"].config["retention.ms"]) >= 94608000000
    group = spec.copartition["subject_keyed"]
    assert {"events.browsing.raw.v1", "consent.state.v1"} <= set(group)
    assert len({topics[t].partitions for t in group}) == 1
