"""What a live sink holds: events under keys, retractions ending them, the ledger's keys."""

from __future__ import annotations

import pytest

from consentgate.ops.replay_live import EventRef, HeldIndex, classify
from consentgate.router.records import sink_event_id
from tests.unit.policy_fixtures import KEYS, SINKS

pytestmark = pytest.mark.unit


def test_a_retraction_ends_everything_held_under_its_key_only() -> None:
    index = HeldIndex()
    index.data(b"k1", "e1")
    index.data(b"k1", "e2")
    index.data(b"k2", "e2")  # the same event under a second key (a former pseudonym)
    index.data(b"k3", "e3")
    assert index.holds(["e1"]) and index.keys_of(["e2"]) == {b"k1", b"k2"}
    assert index.retracted(b"k1") == {"e1", "e2"}
    assert not index.holds(["e1"])
    assert index.keys_of(["e2"]) == {b"k2"}  # still held under the other key
    assert index.keys() == {b"k2", b"k3"}
    index.data(b"k1", "e1")  # written again after the retraction: held again
    assert index.holds(["e1"])


def test_the_ledger_names_a_subjects_keys_that_still_hold_data() -> None:
    index = HeldIndex()
    index.data(b"old", "scoped-under-the-old-key", 1_000)
    index.data(b"new", "scoped-under-the-new-key", 500)
    index.provided("s1", b"old")
    index.provided("s1", b"gone")  # never held (or already retracted): not a key to retract
    assert index.subject_keys("s1") == {b"old"}
    assert index.oldest_ms == 500
    index.retracted(b"old")
    assert index.subject_keys("s1") == set()
    assert index.subject_keys(None) == set()


@pytest.mark.parametrize(
    ("allowed", "held", "outcome"),
    [(True, True, "unchanged"), (True, False, "add"), (False, True, "retract"),
     (False, False, "none")],
)  # fmt: skip
def test_classify(allowed: bool, held: bool, outcome: str) -> None:
    assert classify(allowed, held) == outcome


def test_an_event_is_named_per_sink_scoped_on_partner_sinks() -> None:
    ref = EventRef("0b7e4bde-30e5-4a52-9f43-1f1c1d8fbc11", "raw[1]@7", "s1")
    first, partner = SINKS["analytics"], SINKS["partner.acme-corp.browsing"]
    assert ref.ids(first, KEYS) == ("0b7e4bde-30e5-4a52-9f43-1f1c1d8fbc11", "src:raw[1]@7")
    scoped = sink_event_id(partner, ref.event_id or "", KEYS)
    assert ref.ids(partner, KEYS) == (scoped, "src:raw[1]@7")
    assert scoped != ref.event_id
    assert EventRef(None, "raw[0]@1").ids(first, KEYS) == ("src:raw[0]@1",)
