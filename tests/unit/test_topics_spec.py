"""deploy/topics.yaml: validation and resolution (no broker)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from consentgate.errors import ConfigError
from consentgate.ops.topics_spec import lifetime, load_spec, parse_spec, policy_sink_topics

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


# -- retention consistency: no record may outlive the evidence the audit judges it by -------

DAY = 86_400_000


def roles_data(**overrides: dict[str, Any]) -> dict[str, Any]:
    """A consistent spec with every role; ``overrides`` replace a topic's config."""
    topics: dict[str, Any] = {
        "raw": {"role": "source", "config": {"retention.ms": 35 * DAY}},
        "changes": {"role": "consent_log", "config": {"retention.ms": 1827 * DAY}},
        "state": {"role": "consent_state", "config": {"cleanup.policy": "compact"}},
        "sink": {"role": "sink", "config": {"retention.ms": 30 * DAY, "segment.ms": DAY}},
        "decisions": {"role": "decisions", "config": {"retention.ms": 90 * DAY}},
        "provisions": {"role": "provisions", "config": {"retention.ms": 1096 * DAY}},
        "dlq": {"role": "dead_letters", "config": {"retention.ms": 30 * DAY, "segment.ms": DAY}},
        "unrelated": {"config": {"retention.ms": 400 * DAY}},  # no role: not checked
    }
    for name, config in overrides.items():
        topics[name]["config"] = config
    return {"version": 1, "topics": topics}


def test_consistent_roles_are_accepted_and_listed() -> None:
    spec = parse_spec(roles_data())
    assert spec.with_role("source") == ["raw"]
    assert spec.with_role("sink") == ["sink"]
    assert spec.topics["unrelated"].role is None


def test_raw_kept_shorter_than_a_sink_is_refused_naming_both() -> None:
    # the old deploy/topics.yaml: raw 14 d, sinks 30 d (7 d default segments)
    data = roles_data(raw={"retention.ms": 14 * DAY}, sink={"retention.ms": 30 * DAY})
    with pytest.raises(ConfigError) as err:
        parse_spec(data)
    message = str(err.value)
    assert "raw (source) can delete a record after 14 d (retention.ms 1209600000)" in message
    assert "sink (sink: up to 37 d, retention.ms 2592000000 + segment.ms 604800000)" in message
    assert "dlq (dead_letters: up to 31 d" in message  # the dead-letter topic outlives raw too
    assert "decisions (" not in message  # 90 d >= the sinks' 37 d: fine


def test_a_segment_span_counts_against_the_margin() -> None:
    # 35 d raw vs a 30 d sink: fine with 1 d segments, not with Kafka's 7 d default
    with pytest.raises(ConfigError, match=r"sink \(sink: up to 37 d"):
        parse_spec(roles_data(sink={"retention.ms": 30 * DAY}))
    parse_spec(roles_data(sink={"retention.ms": 30 * DAY, "segment.ms": 5 * DAY - 300_001}))
    with pytest.raises(ConfigError, match=r"raw \(source\)"):
        parse_spec(roles_data(sink={"retention.ms": 30 * DAY, "segment.ms": 5 * DAY}))


def test_infinite_retention_is_the_longest() -> None:
    with pytest.raises(ConfigError, match=r"sink \(sink: forever, retention.ms -1\)"):
        parse_spec(roles_data(sink={"retention.ms": -1}))
    forever = {"retention.ms": -1}
    parse_spec(roles_data(raw=forever, decisions=forever, changes=forever))
    with pytest.raises(ConfigError, match=r"changes \(consent_log\) .* raw \(source: forever"):
        parse_spec(roles_data(raw=forever, decisions=forever))
    with pytest.raises(ConfigError, match=r"decisions \(decisions\) can delete .* raw \(source"):
        parse_spec(roles_data(raw={"retention.ms": -1}))  # decisions must outlive raw records


def test_consent_log_must_outlive_the_raw_sources() -> None:
    with pytest.raises(
        ConfigError, match=r"changes \(consent_log\) can delete a record after 40 d"
    ):
        parse_spec(roles_data(changes={"retention.ms": 40 * DAY}))  # raw: up to 42 d


def test_decisions_must_outlive_sinks_and_dead_letters() -> None:
    data = roles_data(dlq={"retention.ms": 120 * DAY}, raw={"retention.ms": 200 * DAY})
    with pytest.raises(ConfigError) as err:
        parse_spec(data)
    assert "decisions (decisions) can delete a record after 90 d" in str(err.value)
    assert "dlq (dead_letters: up to 127 d" in str(err.value)


def test_provisions_must_outlive_the_sinks() -> None:
    with pytest.raises(ConfigError, match=r"provisions \(provisions\) .* sink \(sink"):
        parse_spec(roles_data(provisions={"retention.ms": 20 * DAY}))


def test_size_limits_and_compaction_shorten_what_a_topic_guarantees() -> None:
    with pytest.raises(ConfigError, match=r"retention\.bytes can delete it at any time"):
        parse_spec(roles_data(raw={"retention.ms": 35 * DAY, "retention.bytes": 10**9}))
    compacted = {"cleanup.policy": "compact", "min.compaction.lag.ms": DAY}
    with pytest.raises(ConfigError, match=r"after 1 d \(compaction after min.compaction.lag.ms"):
        parse_spec(roles_data(raw=compacted))
    # compacted only (consent.state): never deleted by time, but compaction may drop a record
    state = lifetime(parse_spec(roles_data()).topics["state"])
    assert (state.shortest, state.longest) == (0, math.inf)


def test_policy_sinks_are_sinks_and_checked(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(
        yaml.safe_dump({"sinks": [{"topic": f"partner.p{n}.v1"} for n in range(7)]})
    )
    data = roles_data()
    data["sinks_from_policy"] = {
        "file": "policy.yaml",
        "template": {"config": {"retention.ms": 60 * DAY}},
    }
    with pytest.raises(ConfigError) as err:
        parse_spec(data, base_dir=tmp_path)
    assert "partner.p0.v1 (sink: up to 67 d" in str(err.value)
    assert "; and 2 more" in str(err.value)  # 7 sinks: five named, then a count
    data["sinks_from_policy"]["template"]["config"] = {"retention.ms": 20 * DAY}
    spec = parse_spec(data, base_dir=tmp_path)
    assert spec.with_role("sink") == ["sink", *(f"partner.p{n}.v1" for n in range(7))]


def test_policy_sink_with_another_role_is_refused(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({"sinks": [{"topic": "raw"}]}))
    data = roles_data()
    data["sinks_from_policy"] = {"file": "policy.yaml"}
    with pytest.raises(ConfigError, match="'raw' is a policy sink but declared role 'source'"):
        parse_spec(data, base_dir=tmp_path)
    data["sinks_from_policy"] = {"file": "policy.yaml", "template": {"role": "source"}}
    with pytest.raises(ConfigError, match="template has role 'source'"):
        parse_spec(data, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="invalid topics file"):
        parse_spec({"version": 1, "topics": {"x": {"role": "raw"}}})


def test_repository_topics_file_has_roles_and_consistent_retention() -> None:
    path = REPO / "deploy" / "topics.yaml"
    data = yaml.safe_load(path.read_text())
    if not (path.parent / data["sinks_from_policy"]["file"]).exists():
        data["sinks_from_policy"]["required"] = False
    spec = parse_spec(data, base_dir=path.parent)  # check_retention passed
    assert all(topic.role is not None for topic in spec.topics.values())
    raw = spec.with_role("source")
    assert raw == ["events.browsing.raw.v1", "scores.offer_decline.raw.v1"]
    assert spec.with_role("decisions") == ["consentgate.decisions.v1"]
    assert spec.with_role("dead_letters") == ["consentgate.dlq.v1"]
    assert "events.browsing.analytics.v1" in spec.with_role("sink")
    # the old values (raw 14 d) are refused
    data["topics"]["events.browsing.raw.v1"]["config"]["retention.ms"] = 14 * DAY
    with pytest.raises(ConfigError, match=r"events.browsing.raw.v1 \(source\) can delete"):
        parse_spec(data, base_dir=path.parent)
