"""EndOffsetPoller.observe asks again on a retriable answer (a leader moving right after a
topic is created answered NOT_LEADER_FOR_PARTITION once in CI) and raises the others."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from consentgate.router.offsets import EndOffsetPoller


class _Answers:
    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, parts: tuple[int, ...]) -> dict[int, int]:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, dict)
        return answer


def _poller(monkeypatch: pytest.MonkeyPatch, answers: _Answers) -> EndOffsetPoller:
    poller = EndOffsetPoller({"bootstrap.servers": "127.0.0.1:1"}, "t", request_timeout=5.0)
    monkeypatch.setattr(poller, "_list", answers)
    return poller


def test_a_retriable_error_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    moving = KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION, retriable=True))
    answers = _Answers(moving, moving, {0: 7})
    observed_at, ends = _poller(monkeypatch, answers).observe((0,))
    assert ends == {0: 7}
    assert answers.calls == 3
    assert observed_at > 0


def test_not_leader_without_the_retriable_flag_is_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """librdkafka's ListOffsets answer carried NOT_LEADER_FOR_PARTITION with retriable()
    False (test_router_leaks failed on it through StateReader.read)."""
    moving = KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
    assert not moving.args[0].retriable()
    answers = _Answers(moving, {0: 7})
    assert _poller(monkeypatch, answers).observe((0,))[1] == {0: 7}
    assert answers.calls == 2


def test_a_fatal_error_is_raised_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    denied = KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    answers = _Answers(denied, {0: 7})
    with pytest.raises(KafkaException):
        _poller(monkeypatch, answers).observe((0,))
    assert answers.calls == 1
