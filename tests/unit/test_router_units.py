"""The router v2's pure pieces: partitioner, judge, pending changes, readiness, settings."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from consentgate.consent.timeline import Timeline
from consentgate.errors import ConfigError
from consentgate.models.consent import ConsentTimeline
from consentgate.policy import ReasonCode
from consentgate.router.config import RouterConfig, fields
from consentgate.router.gate import GateVerdict
from consentgate.router.judge import Judge
from consentgate.router.metrics import RouterMetrics
from consentgate.router.partitioner import SubjectPartitioner, murmur2, partition_for
from consentgate.router.pending import Unsettled, view_shows
from consentgate.router.plan import Parsed, RawRecord, Router
from consentgate.router.state import LoopState
from consentgate.router.view import ConsentLookup
from consentgate.serde import Serde
from tests.unit.policy_fixtures import KEYS, POLICY
from tests.unit.test_router_plan import NOW, SERDE, T0, browsing, change, timeline

pytestmark = pytest.mark.unit


# -- partitioner ---------------------------------------------------------------------------
# partitions as librdkafka's murmur2_random put these keys on a 7-partition topic of the
# local broker (2026-12-02), and Java's Utils.murmur2 values
@pytest.mark.parametrize(("key", "partition"), [(b"s1", 6), (b"s2", 6), (b"abc", 4)])
def test_partition_matches_librdkafka_murmur2(key: bytes, partition: int) -> None:
    assert partition_for(key, 7) == partition


def test_murmur2_is_a_signed_32_bit_value_and_memory_is_bounded() -> None:
    values = {murmur2(f"k{i}".encode()) for i in range(1000)}
    assert all(-(2**31) <= v < 2**31 for v in values)
    assert any(v < 0 for v in values)
    part = SubjectPartitioner(6, memory=10)
    for i in range(100):
        assert part(f"k{i}".encode()) == partition_for(f"k{i}".encode(), 6)
    assert len(part._known) <= 10


# -- judge ---------------------------------------------------------------------------------
def _parsed(partition: int, subject: str = "s1", key: bytes | None = b"s1") -> Parsed:
    core = Router(POLICY, SERDE, KEYS)
    rec = RawRecord("events.browsing.raw.v1", partition, 7, key, browsing(subject_id=subject))
    parsed = core.parse(rec, NOW)
    assert isinstance(parsed, Parsed)
    return parsed


def _judge(partitions: int = 6) -> Judge:
    return Judge(Router(POLICY, SERDE, KEYS), partitions)


def test_event_off_its_subjects_partition_is_denied_and_dead_lettered() -> None:
    judge = _judge()
    home = partition_for(b"s1", 6)
    assert judge.misplaced(_parsed(home), NOW) is None
    plan = judge.misplaced(_parsed((home + 1) % 6), NOW)
    assert plan is not None and plan.dead_letter
    assert {d.reason for _, d in plan.decisions} == {ReasonCode.MISROUTED}
    letter = SERDE.decode(plan.outputs[-1].value).value
    assert letter["error_type"] == "Misrouted"
    assert f"expected_partition={home}" in letter["reason"]
    assert not any(d.allowed for _, d in plan.decisions)


@pytest.mark.parametrize("key", [None, b"s2", b"S1", b""])
def test_event_not_keyed_by_its_subject_is_dead_lettered(key: bytes | None) -> None:
    judge = _judge()
    plan = judge.misplaced(_parsed(partition_for(b"s1", 6), key=key), NOW)
    assert plan is not None and plan.dead_letter and not plan.decisions
    letter = SERDE.decode(plan.outputs[-1].value).value
    assert letter["error_type"] == "KeyMismatch" and letter["stage"] == "validate"
    assert ("no key" in letter["reason"]) == (key is None)
    assert letter["raw_key"] == key


def _lookup(tl: Timeline) -> ConsentLookup:
    return ConsentLookup("present", SERDE.encode(tl.record))


def test_fail_closed_mappings() -> None:
    judge = _judge()
    parsed = _parsed(partition_for(b"s1", 6))
    granted = _lookup(timeline(change("GRANT", "analytics", None, T0)))
    allowed = judge.judge(parsed, GateVerdict.READY, granted, NOW)
    assert dict((s.name, d.reason) for s, d in allowed.decisions)["analytics"] is ReasonCode.ALLOWED
    cases = {
        ReasonCode.CONSENT_STATE_STALE: judge.judge(parsed, GateVerdict.STALE, granted, NOW),
        ReasonCode.ERASED: judge.judge(parsed, GateVerdict.READY, ConsentLookup("erased"), NOW),
        ReasonCode.CONSENT_UNREADABLE: judge.judge(
            parsed, GateVerdict.READY, ConsentLookup("present", b"\x00garbage"), NOW
        ),
    }
    for reason, plan in cases.items():
        assert {d.reason for _, d in plan.decisions} == {reason}
        assert not any(d.allowed for _, d in plan.decisions)


# -- pending changes -------------------------------------------------------------------------
def test_view_shows_a_change_only_once_it_holds_it() -> None:
    grant = change("GRANT", "analytics", None, T0)
    withdraw = change("WITHDRAW", "analytics", None, T0 + timedelta(minutes=1))
    old = timeline(grant)
    new = timeline(grant, withdraw)
    assert not view_shows(withdraw, _lookup(old), old)
    assert view_shows(withdraw, _lookup(new), new)
    assert view_shows(withdraw, ConsentLookup("erased"), None)
    assert not view_shows(withdraw, ConsentLookup("missing"), None)
    trimmed = Timeline(
        ConsentTimeline.model_validate(
            {**old.record.model_dump(), "trimmed_before": T0 + timedelta(hours=1)}
        )
    )
    assert view_shows(withdraw, _lookup(trimmed), trimmed)


def test_unsettled_counts_per_subject() -> None:
    u = Unsettled()
    u.add(b"a")
    u.add(b"a")
    u.settle(b"a")
    assert b"a" in u and len(u) == 1
    u.settle(b"a")
    assert b"a" not in u and not u


# -- readiness ------------------------------------------------------------------------------
def test_ready_only_with_every_assigned_partition_loaded_and_not_after_revocation() -> None:
    state = LoopState(
        config=RouterConfig.build(),
        policy=POLICY,
        metrics=RouterMetrics(),
        partitions=6,
        consent_wait=1.0,
    )
    assert not state.ready  # before the first assignment
    state.assigned_once = True
    state.note_loading(0, 10, 100)
    assert not state.ready
    state.note_loading(0, 100, 100)
    assert state.ready
    state.revoked = True
    assert not state.ready
    state.revoked = False
    state.fatal = "boom"
    assert not state.ready


# -- settings -------------------------------------------------------------------------------
def test_settings_precedence_file_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "router.yaml"
    file.write_text("gate:\n  skew: 1.0\n  poll_interval: 0.2\nloop:\n  batch: 10\n")
    monkeypatch.setenv("CONSENTGATE_ROUTER_GATE__SKEW", "2.0")
    monkeypatch.setenv("CONSENTGATE_ROUTER_APP_ID", "from-env")
    config = RouterConfig.build(file, {"loop.batch": 99, "web.port": "7000"})
    assert config.gate.skew == 2.0  # env over file
    assert config.gate.poll_interval == 0.2  # file over default
    assert config.loop.batch == 99  # command line over file
    assert config.web.port == 7000
    assert config.app_id == "from-env"
    assert config.transactional_id == f"from-env-{config.member_id}"


def test_bad_settings_are_a_config_error_and_every_field_has_help() -> None:
    with pytest.raises(ConfigError):
        RouterConfig.build(None, {"loop.batch": 0})
    with pytest.raises(ConfigError):
        RouterConfig.build(None, {"loop.no_such_knob": 1})
    assert all(info.description for _, info in fields())
    assert {"gate.consent_wait", "loop.commit_interval", "web.port"} <= {n for n, _ in fields()}


def test_router_serde_reads_the_registry_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """v1 built its serde from Settings, which has no basic-auth or auto-register field: both
    were silently ignored. The router now builds it from SerdeSettings."""
    from consentgate.serde import SerdeSettings  # noqa: PLC0415
    from consentgate.serde.settings import registry_client_conf  # noqa: PLC0415

    monkeypatch.setenv("CONSENTGATE_SCHEMA_REGISTRY_URL", f"mock://{uuid.uuid4().hex}")
    monkeypatch.setenv("CONSENTGATE_SCHEMA_REGISTRY_BASIC_AUTH", "u:p")
    monkeypatch.setenv("CONSENTGATE_SCHEMA_REGISTRY_AUTO_REGISTER", "false")
    settings = SerdeSettings()
    assert registry_client_conf(settings) == {
        "url": settings.schema_registry_url,
        "basic.auth.user.info": "u:p",
    }
    assert settings.schema_registry_auto_register is False
    assert isinstance(Serde.from_settings(settings), Serde)
