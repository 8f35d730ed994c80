"""Replay ranges: what ``--from``/``--to`` mean per partition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from consentgate.errors import ConfigError
from consentgate.ops.replay_range import PartitionRange, Position, clamp, parse_position

pytestmark = pytest.mark.unit


def test_positions_parse_from_their_text() -> None:
    assert parse_position("earliest") == Position("earliest")
    assert parse_position("latest") == Position("latest")
    assert parse_position("1234") == Position("offset", offset=1234)
    assert parse_position("2026-12-01T09:00:00Z") == Position(
        "time", time=datetime(2026, 12, 1, 9, tzinfo=UTC)
    )
    nine = timezone(timedelta(hours=9))
    assert parse_position("2026-12-01T18:00+09:00").time == datetime(2026, 12, 1, 18, tzinfo=nine)


@pytest.mark.parametrize("text", ["yesterday", "-5", "2026-12-01T09:00", "2026-13-01T00:00Z", ""])
def test_a_bad_position_is_refused_with_what_is_expected(text: str) -> None:
    with pytest.raises(ConfigError, match="--to"):
        parse_position(text, "--to")


def test_a_time_without_zone_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="add Z"):
        parse_position("2026-12-01T09:00")


def test_canonical_text_is_stable_for_the_id() -> None:
    assert parse_position("2026-12-01T09:00:00Z").text == parse_position("2026-12-01T09:00Z").text
    assert parse_position("0042").text == "42"


def test_offsets_are_clamped_to_what_is_retained() -> None:
    assert clamp(Position("earliest"), 10, 50) == 10
    assert clamp(Position("latest"), 10, 50) == 50
    assert clamp(Position("offset", offset=3), 10, 50) == 10
    assert clamp(Position("offset", offset=30), 10, 50) == 30
    assert clamp(Position("offset", offset=99), 10, 50) == 50
    when = Position("time", time=datetime(2026, 1, 1, tzinfo=UTC))
    assert clamp(when, 10, 50, by_time=20) == 20
    assert clamp(when, 10, 50, by_time=-1) == 50  # no record at or after it: nothing
    assert clamp(when, 10, 50, by_time=5) == 10


def test_a_range_is_never_negative() -> None:
    assert PartitionRange(0, 30, 20).size == 0
    assert PartitionRange(0, 20, 30).size == 10
