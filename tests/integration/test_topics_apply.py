"""Topics as code on the real broker: create, alter, grow, refuse, dry-run, co-partition check."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from consentgate.cli import main as cli_main
from consentgate.errors import ConfigError
from consentgate.ops.topics import apply, check_copartitioned
from consentgate.ops.topics_spec import TopicsSpec, parse_spec
from tests.conftest import TopicFactory

pytestmark = pytest.mark.integration


@pytest.fixture
def names(kafka_admin: AdminClient) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    chosen = {k: f"it-topics-{tag}.{k}" for k in ("raw", "state", "ledger")}
    yield chosen
    futures = kafka_admin.delete_topics(list(chosen.values()), operation_timeout=30)
    for future in futures.values():
        with contextlib.suppress(Exception):  # some were never created
            future.result(timeout=30)


def make_spec(names: dict[str, str], *, partitions: int = 3, retention: int = 1000) -> TopicsSpec:
    data: dict[str, Any] = {
        "version": 1,
        "copartition": {
            "keyed": {"partitions": partitions, "topics": [names["raw"], names["state"]]}
        },
        "topics": {
            names["raw"]: {"config": {"retention.ms": retention}},
            names["state"]: {"config": {"cleanup.policy": "compact"}},
            names["ledger"]: {"partitions": 1, "config": {"retention.ms": 94694400000}},
        },
    }
    return parse_spec(data)


def describe(admin: AdminClient, topic: str) -> tuple[int, dict[str, str]]:
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    return len(meta.partitions), {k: v.value for k, v in configs.items()}


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Config changes are acked by the controller before every broker serves them."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not visible within the timeout"
        time.sleep(0.1)


def test_apply_creates_then_is_idempotent(kafka_admin: AdminClient, names: dict[str, str]) -> None:
    report = apply(kafka_admin, make_spec(names))
    assert sorted(report.changes) == sorted(
        [
            f"created {names['raw']} (3 partitions)",
            f"created {names['state']} (3 partitions)",
            f"created {names['ledger']} (1 partitions)",
        ]
    )
    partitions, config = describe(kafka_admin, names["state"])
    assert partitions == 3
    assert config["cleanup.policy"] == "compact"
    assert describe(kafka_admin, names["ledger"])[1]["retention.ms"] == "94694400000"

    again = apply(kafka_admin, make_spec(names))
    assert again.changes == []
    assert again.lines() == ["unchanged: 3"]


def test_apply_alters_differing_config(kafka_admin: AdminClient, names: dict[str, str]) -> None:
    apply(kafka_admin, make_spec(names))
    report = apply(kafka_admin, make_spec(names, retention=2000))
    assert report.changes == [f"{names['raw']}: retention.ms 1000 -> 2000"]
    eventually(lambda: describe(kafka_admin, names["raw"])[1]["retention.ms"] == "2000")
    assert len(report.unchanged) == 2


def test_dry_run_changes_nothing(kafka_admin: AdminClient, names: dict[str, str]) -> None:
    report = apply(kafka_admin, make_spec(names), dry_run=True)
    assert len(report.changes) == 3
    assert report.lines()[0].startswith("would: created ")
    topics = kafka_admin.list_topics(timeout=10).topics
    assert not any(name in topics for name in names.values())

    apply(kafka_admin, make_spec(names))
    dry = apply(kafka_admin, make_spec(names, retention=5000), dry_run=True)
    assert dry.changes == [f"{names['raw']}: retention.ms 1000 -> 5000"]
    assert describe(kafka_admin, names["raw"])[1]["retention.ms"] == "1000"


def test_partitions_grow_only_when_asked_and_never_shrink(
    kafka_admin: AdminClient, names: dict[str, str]
) -> None:
    apply(kafka_admin, make_spec(names, partitions=2))
    with pytest.raises(ConfigError, match=r"has 2 partitions, declared 4.*--increase-partitions"):
        apply(kafka_admin, make_spec(names, partitions=4))
    assert describe(kafka_admin, names["raw"])[0] == 2  # refused as a whole: nothing changed

    report = apply(kafka_admin, make_spec(names, partitions=4), allow_partition_increase=True)
    assert f"{names['raw']}: partitions 2 -> 4" in report.changes
    assert f"{names['state']}: partitions 2 -> 4" in report.changes
    assert check_copartitioned(kafka_admin, [names["raw"], names["state"]]) == 4

    with pytest.raises(ConfigError, match="cannot decrease"):
        apply(kafka_admin, make_spec(names, partitions=3), allow_partition_increase=True)


def test_check_copartitioned_names_topics_and_counts(
    kafka_admin: AdminClient, topic_factory: TopicFactory
) -> None:
    six, also_six, three = topic_factory(6), topic_factory(6), topic_factory(3)
    # metadata can lag CreateTopics under load
    eventually(lambda: {six, also_six, three} <= set(kafka_admin.list_topics(timeout=10).topics))
    assert check_copartitioned(kafka_admin, [six, also_six]) == 6
    with pytest.raises(ConfigError) as err:
        check_copartitioned(kafka_admin, [six, three])
    assert f"{six}=6" in str(err.value)
    assert f"{three}=3" in str(err.value)
    with pytest.raises(ConfigError, match="missing: nope-"):
        check_copartitioned(kafka_admin, [six, f"nope-{uuid.uuid4().hex[:6]}"])


def test_cli_apply(
    kafka_bootstrap: str,
    names: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CONSENTGATE_BOOTSTRAP", kafka_bootstrap)
    file = tmp_path / "topics.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "topics": {names["raw"]: {"partitions": 2, "config": {"retention.ms": 9}}},
            }
        )
    )
    assert cli_main(["topics", "apply", "--file", str(file), "--dry-run"]) == 0
    assert f"would: created {names['raw']} (2 partitions)" in capsys.readouterr().out
    assert cli_main(["topics", "apply", "--file", str(file)]) == 0
    assert f"created {names['raw']} (2 partitions)" in capsys.readouterr().out
    assert cli_main(["topics", "apply", "--file", str(file)]) == 0
    assert capsys.readouterr().out.strip() == "unchanged: 1"
