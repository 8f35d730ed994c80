"""The time-correct gate's watermark tracker (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentgate.router.gate import GateVerdict, WatermarkTracker

pytestmark = pytest.mark.unit

READY, WAIT, STALE = GateVerdict.READY, GateVerdict.WAIT, GateVerdict.STALE


def check(
    tracker: WatermarkTracker, t: float, *, since: float = 0.0, now: float = 0.0
) -> GateVerdict:
    return tracker.check(0, t, waiting_since=since, now_mono=now, max_wait=2.0)


def test_ready_when_view_reached_end_observed_after_event() -> None:
    tracker = WatermarkTracker()
    tracker.observe_end(0, 10, observed_at=100.0)
    tracker.observe_position(0, 10)
    assert check(tracker, 99.5) is READY


def test_waits_without_an_observation_at_or_after_event_time() -> None:
    tracker = WatermarkTracker()
    tracker.observe_end(0, 10, observed_at=100.0)
    tracker.observe_position(0, 10)
    assert tracker.required_offset(0, 100.5) is None
    assert check(tracker, 100.5) is WAIT
    tracker.observe_end(0, 12, observed_at=100.6)
    assert check(tracker, 100.5) is WAIT  # the view has not applied 10 and 11 yet
    tracker.observe_position(0, 12)
    assert check(tracker, 100.5) is READY


def test_observation_exactly_at_event_time_counts() -> None:
    tracker = WatermarkTracker()
    tracker.observe_end(0, 3, observed_at=50.0)
    tracker.observe_position(0, 3)
    assert check(tracker, 50.0) is READY


def test_unknown_position_never_ready() -> None:
    tracker = WatermarkTracker()
    tracker.observe_end(0, 0, observed_at=100.0)
    assert check(tracker, 1.0) is WAIT  # not loaded (not assigned, or before recovery)
    tracker.observe_position(0, 0)  # recovery done on an empty partition
    assert check(tracker, 1.0) is READY


def test_earliest_observation_after_event_decides() -> None:
    tracker = WatermarkTracker()
    tracker.observe_end(0, 5, observed_at=10.0)
    tracker.observe_end(0, 9, observed_at=20.0)
    tracker.observe_position(0, 5)
    assert tracker.required_offset(0, 9.0) == 5
    assert check(tracker, 9.0) is READY
    assert tracker.required_offset(0, 15.0) == 9
    assert check(tracker, 15.0) is WAIT


def test_repeated_end_moves_the_stamp_forward_exactly() -> None:
    tracker = WatermarkTracker()
    tracker.observe_end(0, 5, observed_at=10.0)
    tracker.observe_end(0, 5, observed_at=11.0)
    tracker.observe_end(0, 7, observed_at=12.0)
    assert tracker.partition(0).times == [11.0, 12.0]
    assert tracker.required_offset(0, 10.5) == 5  # still 5, not the stricter 7
    assert tracker.required_offset(0, 9.0) == 5
    assert tracker.required_offset(0, 11.5) == 7


def test_late_answer_to_older_request_is_ignored() -> None:
    tracker = WatermarkTracker()
    tracker.observe_end(0, 9, observed_at=20.0)
    tracker.observe_end(0, 5, observed_at=10.0)
    assert tracker.partition(0).ends == [9]


def test_shrinking_log_voids_history() -> None:
    tracker = WatermarkTracker()
    tracker.observe_end(0, 9, observed_at=20.0)
    tracker.observe_end(0, 2, observed_at=21.0)
    assert tracker.partition(0).ends == [2]
    assert tracker.required_offset(0, 19.0) == 2


def test_clock_skew_requires_a_later_observation() -> None:
    tracker = WatermarkTracker(clock_skew=0.5)
    tracker.observe_end(0, 5, observed_at=100.2)
    tracker.observe_position(0, 5)
    assert check(tracker, 100.0) is WAIT  # our 100.2 may be the event's 99.7 + skew
    tracker.observe_end(0, 5, observed_at=100.5)
    assert check(tracker, 100.0) is READY


def test_stale_after_max_wait() -> None:
    tracker = WatermarkTracker()
    tracker.observe_end(0, 10, observed_at=100.0)
    tracker.observe_position(0, 4)
    assert check(tracker, 99.0, since=0.0, now=1.9) is WAIT
    assert check(tracker, 99.0, since=0.0, now=2.0) is STALE


def test_staleness_is_per_event_no_head_of_line_denial() -> None:
    """One stale event does not make later events stale: each is judged on its own wait and
    on what the view could know about it (issue 10, leak path 4)."""
    tracker = WatermarkTracker()
    tracker.observe_end(0, 10, observed_at=100.0)
    tracker.observe_position(0, 4)
    assert check(tracker, 99.0, since=0.0, now=2.0) is STALE
    # the next queued event arrived later: it has its own wait
    assert check(tracker, 99.1, since=1.5, now=2.0) is WAIT
    tracker.observe_position(0, 10)  # the view catches up: READY at once
    assert check(tracker, 99.1, since=1.5, now=2.1) is READY


def test_idle_consent_partition_is_never_stale() -> None:
    tracker = WatermarkTracker()
    tracker.observe_position(0, 7)
    for i in range(50):  # the end never moves; every new observation keeps it ready
        tracker.observe_end(0, 7, observed_at=100.0 + i)
        assert check(tracker, 100.0 + i - 0.01, since=float(i), now=float(i) + 10.0) is READY


def test_reset_position_after_revoke() -> None:
    tracker = WatermarkTracker()
    tracker.observe_end(0, 10, observed_at=100.0)
    tracker.observe_position(0, 10)
    tracker.reset_position(0)
    assert check(tracker, 99.0) is WAIT
    assert tracker.lag(0) == 10


def test_position_never_goes_back() -> None:
    tracker = WatermarkTracker()
    tracker.observe_position(0, 8)
    tracker.observe_position(0, 3)
    assert tracker.partition(0).position == 8


def test_partitions_are_independent() -> None:
    tracker = WatermarkTracker()
    tracker.observe_end(0, 10, observed_at=100.0)
    tracker.observe_end(1, 0, observed_at=100.0)
    tracker.observe_position(1, 0)
    assert tracker.check(1, 99.0, waiting_since=0, now_mono=0, max_wait=1) is READY
    assert tracker.check(0, 99.0, waiting_since=0, now_mono=0, max_wait=1) is WAIT


def test_history_is_pruned_but_newest_kept() -> None:
    tracker = WatermarkTracker(history=10.0)
    for i in range(100):
        tracker.observe_end(0, i, observed_at=float(i))
    wm = tracker.partition(0)
    assert wm.times[0] >= 89.0
    assert wm.times[-1] == 99.0
    # an event older than every kept observation uses the oldest kept one (still after it)
    assert tracker.required_offset(0, 1.0) == wm.ends[0]


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="clock_skew"):
        WatermarkTracker(clock_skew=-1)


# -- the invariant, over random histories --------------------------------------------------
# A partition's true end offset grows over wall time. Each observation is stamped before its
# request and answered later, so it reports an end >= the true end at its stamp. Whenever the
# gate says READY for an event at t, the view has applied every record appended before
# t + skew.


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[tuple[float, int]], list[tuple[float, float]], float]:
    appends = sorted(draw(st.lists(st.floats(0, 100), max_size=40)))
    # (stamp, answer delay) of each observation, in stamp order
    stamps = sorted(draw(st.lists(st.floats(0, 100), min_size=1, max_size=20)))
    delays = draw(st.lists(st.floats(0, 5), min_size=len(stamps), max_size=len(stamps)))
    event_time = draw(st.floats(0, 100))
    writes = [(a, i + 1) for i, a in enumerate(appends)]  # after append i at time a, end = i+1
    return writes, list(zip(stamps, delays, strict=True)), event_time


def _true_end(writes: list[tuple[float, int]], at: float) -> int:
    return max((end for when, end in writes if when < at), default=0)


@given(histories(), st.integers(0, 45), st.floats(0, 2))
def test_ready_implies_view_is_as_new_as_the_event(
    history: tuple[list[tuple[float, int]], list[tuple[float, float]], float],
    position: int,
    skew: float,
) -> None:
    writes, observations, event_time = history
    tracker = WatermarkTracker(clock_skew=skew, history=1000.0)
    for stamp, delay in observations:
        tracker.observe_end(0, _true_end(writes, stamp + delay), observed_at=stamp)
    tracker.observe_position(0, position)
    verdict = tracker.check(0, event_time, waiting_since=0, now_mono=0, max_wait=1)
    if verdict is READY:
        assert position >= _true_end(writes, event_time + skew)


def test_a_patient_check_waits_while_the_position_still_advances() -> None:
    """A router reading a consent.changes backlog at start: not stale while it reads."""
    tracker = WatermarkTracker()
    tracker.observe_end(0, 245_279, observed_at=100.0)
    tracker.observe_position(0, 1_000, now_mono=0.5)
    patient = {"waiting_since": 0.0, "max_wait": 2.0, "patient": True}
    assert tracker.check(0, 99.0, now_mono=2.4, **patient) is WAIT
    tracker.observe_position(0, 200_000, now_mono=3.0)
    assert tracker.check(0, 99.0, now_mono=4.9, **patient) is WAIT
    assert tracker.check(0, 99.0, now_mono=4.9, waiting_since=0.0, max_wait=2.0) is STALE
    tracker.observe_position(0, 245_279, now_mono=5.5)
    assert tracker.check(0, 99.0, now_mono=9.0, **patient) is READY


def test_a_patient_check_is_stale_once_the_position_stops() -> None:
    tracker = WatermarkTracker()
    tracker.observe_end(0, 10, observed_at=100.0)
    tracker.observe_position(0, 4, now_mono=1.0)
    patient = {"waiting_since": 0.0, "max_wait": 2.0, "patient": True}
    assert tracker.check(0, 99.0, now_mono=2.9, **patient) is WAIT
    assert tracker.check(0, 99.0, now_mono=3.0, **patient) is STALE
    tracker.reset_position(0)  # revoked: nothing is known to advance
    assert tracker.check(0, 99.0, now_mono=3.0, **patient) is STALE


def test_a_partition_waits_while_the_reader_moves_on_another() -> None:
    tracker = WatermarkTracker()
    tracker.observe_end(0, 10, observed_at=100.0)
    tracker.observe_position(0, 4, now_mono=1.0)
    tracker.observe_position(1, 500, now_mono=2.5)
    patient = {"waiting_since": 0.0, "max_wait": 2.0, "patient": True}
    assert tracker.check(0, 99.0, now_mono=4.0, **patient) is WAIT
    assert tracker.check(0, 99.0, now_mono=4.5, **patient) is STALE


def test_a_partition_not_read_yet_is_patient_while_the_reader_reads_others() -> None:
    """One consumer reads every changes partition: partition 1 waits its turn while 0 moves."""
    tracker = WatermarkTracker()
    tracker.observe_end(1, 9_888, observed_at=100.0)
    tracker.reset_position(1, now_mono=0.0)  # assigned: reading starts
    patient = {"waiting_since": 0.0, "max_wait": 1.0, "patient": True}
    assert tracker.check(1, 99.0, now_mono=0.9, **patient) is WAIT
    tracker.observe_position(0, 5_000, now_mono=1.5)
    assert tracker.check(1, 99.0, now_mono=2.0, **patient) is WAIT
    assert tracker.check(1, 99.0, now_mono=2.5, **patient) is STALE  # the reader stopped
    assert tracker.check(1, 99.0, now_mono=2.0, waiting_since=0.0, max_wait=1.0) is STALE
    tracker.observe_position(1, 9_888, now_mono=2.6)
    assert tracker.check(1, 99.0, now_mono=9.0, **patient) is READY
