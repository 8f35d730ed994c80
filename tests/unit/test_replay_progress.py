"""Replay progress lines: done/total, rate, ETA, at most one a second."""

from __future__ import annotations

import io

import pytest

from consentgate.ops.replay_progress import Progress, format_eta

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_line_says_done_total_rate_and_eta() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress(10_000, out, tty=False, clock=clock)
    clock.t += 2.0
    progress.update(4_000)
    assert out.getvalue() == "replay 4,000/10,000 ( 40.0%) 2,000 records/s ETA 00:03\n"


def test_lines_come_at_most_every_second() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress(100, out, tty=False, clock=clock)
    for done in range(1, 50):
        clock.t += 0.1
        progress.update(done)
    assert len(out.getvalue().splitlines()) == 4  # 4.9 s
    progress.finish()
    assert out.getvalue().splitlines()[-1].startswith("replay 49/100")


def test_a_terminal_gets_one_redrawn_bar() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress(8, out, tty=True, clock=clock)
    clock.t += 1.0
    progress.update(4)
    progress.finish()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "[############............]" in text


def test_eta() -> None:
    assert format_eta(None) == "--:--"
    assert format_eta(59.6) == "01:00"
    assert format_eta(3725) == "1:02:05"
