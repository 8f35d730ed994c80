"""What a replay means (its id, its pin) and the arguments it refuses before any I/O."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from consentgate.cli import main
from consentgate.errors import ConfigError
from consentgate.ops.replay import Replay, ReplayRequest, RunPin
from consentgate.ops.replay_range import Position, parse_position
from consentgate.router.config import RouterConfig
from consentgate_dev.demo.policygen import PolicyPlan, policy_yaml

pytestmark = pytest.mark.unit

RAW = "events.browsing.raw.v1"
BASE = ReplayRequest(source=RAW, start=Position("earliest"), consent="now")


def test_the_default_id_is_stable_and_follows_the_meaning_not_the_speed() -> None:
    assert BASE.id_for("p1") == replace(BASE, rate=10.0, commit_interval=2.0).id_for("p1")
    assert BASE.id_for("p1").startswith(RAW + "-")
    others = [
        replace(BASE, consent="event-time"),
        replace(BASE, start=Position("offset", offset=5)),
        replace(BASE, end=parse_position("2026-12-01T00:00Z")),
        replace(BASE, sinks=("analytics",)),
        replace(BASE, into="v2"),
        replace(BASE, live=True),
    ]
    ids = {BASE.id_for("p1"), BASE.id_for("p2"), *(r.id_for("p1") for r in others)}
    assert len(ids) == 2 + len(others)
    assert replace(BASE, replay_id="mine").id_for("p1") == "mine"
    with pytest.raises(ConfigError, match="--id"):
        replace(BASE, replay_id="no spaces").id_for("p1")


def test_a_pin_survives_the_offset_metadata() -> None:
    pin = RunPin("abc", 1234, "replay-20261201T000000")
    assert RunPin.decode(pin.encode()) == pin
    assert RunPin.decode(RunPin("abc", 0, None).encode()) == RunPin("abc", 0, None)
    assert RunPin.decode("") is None and RunPin.decode("{}") is None and RunPin.decode(None) is None


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RouterConfig:
    monkeypatch.setenv("CONSENTGATE_BOOTSTRAP", "127.0.0.1:1")  # never contacted
    monkeypatch.setenv("CONSENTGATE_PSEUDONYM_MASTER_KEY", "unit-master-key-0123456789")
    monkeypatch.delenv("CONSENTGATE_SCHEMA_REGISTRY_URL", raising=False)
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml(PolicyPlan(partners=["client-01"], score_partners=["client-01"])))
    return RouterConfig.build(None, {"policy": path})


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (replace(BASE, live=True, consent="event-time"), "--live needs --consent now"),
        (replace(BASE, live=True, into="v1"), "exclude each other"),
        (replace(BASE, source="other.topic"), "no source of the policy"),
        (replace(BASE, sinks=("partner.client-01.scores",)), "not fed by browsing"),
        (replace(BASE, sinks=("nope",)), "nope"),
        (replace(BASE, into="bad/suffix"), "--into"),
        (replace(BASE, rate=0.0), "--rate"),
    ],
)
def test_bad_requests_are_refused_before_any_io(
    config: RouterConfig, request_: ReplayRequest, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Replay(request_, config)


def test_a_missing_pseudonym_key_is_refused(
    config: RouterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONSENTGATE_PSEUDONYM_MASTER_KEY")
    with pytest.raises(ConfigError, match="pseudonym key"):
        Replay(BASE, config)


def test_the_command_exits_2_with_the_reason(
    config: RouterConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["replay", "--source", RAW, "--from", "earliest", "--policy", str(config.policy)]
    assert main([*args, "--consent", "event-time", "--live"]) == 2
    assert "--live needs --consent now" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main([*args, "--consent", "now", "--from", "yesterday"])
    assert exited.value.code == 2
    assert "ISO-8601" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main([*args, "--consent", "now", "--live", "--into", "v1"])
    assert exited.value.code == 2
