"""The local broker formats its state folder whatever cluster id it draws.

CI once failed because a random id began with "-" (1 draw in 64): kafka-storage's argument
parser read it as an option ("argument --cluster-id/-t: expected one argument").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consentgate_dev import jvm
from consentgate_dev.broker import jars, local
from consentgate_dev.broker.local import LocalBroker
from consentgate_dev.settings import DevSettings

pytestmark = pytest.mark.integration


def test_a_cluster_id_starting_with_a_dash_formats(tmp_path: Path) -> None:
    broker = LocalBroker(
        DevSettings(
            state_dir=tmp_path,
            broker_port=jvm.free_port(),
            broker_controller_port=jvm.free_port(),
        )
    )
    dashed = "-" + "A" * 21  # 22 characters, as a base64 UUID, and a leading dash
    broker._write_config()
    broker._format_once(jvm.find_java(jvm.MIN_JAVA, None), jars.ensure_jars(), dashed)
    assert (broker.data / "meta.properties").exists()
    assert json.loads((broker.root / "broker.json").read_text())["cluster_id"] == dashed


def test_drawn_cluster_ids_never_start_with_a_dash() -> None:
    """Like Kafka's own Uuid.randomUuid, which skips ids whose text starts with '-'."""
    ids = [local.new_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
