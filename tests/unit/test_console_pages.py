"""The console's pure parts: preferences (pending until consent-state shows a change),
pages of rows, cells, the timeline SVG and the templates' autoescaping."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consentgate.consent.timeline import Timeline, apply
from consentgate.console.pages_login import safe_next
from consentgate.console.preferences import grant_keys, pending_changes, preferences
from consentgate.console.render import cell, page_of, render
from consentgate.console.sources import ReportCache
from consentgate.console.timeline_svg import interval_rows, timeline_svg
from consentgate.models.consent import ConsentAction, ConsentChange, ConsentMethod
from consentgate.ops.report import SubjectRecords
from consentgate.ops.report_rows import LoggedChange, state_section
from consentgate.policy import Policy, load_policy
from consentgate_dev.demo.policygen import PolicyPlan, policy_yaml

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MARKUP = '<script>alert("x")</script>'


def _change(
    cid: str,
    action: str,
    minute: int,
    purpose: str | None = "analytics",
    recipient: str | None = None,
    *,
    subject: str = "s1",
) -> ConsentChange:
    return ConsentChange(
        change_id=cid,
        subject_id=subject,
        action=ConsentAction(action),
        purpose=purpose,
        recipient=recipient,
        effective_time=T0 + timedelta(minutes=minute),
        recorded_time=T0 + timedelta(minutes=minute),
        method=ConsentMethod.WEB_FORM,
    )


def _records(logged: list[ConsentChange], folded: list[ConsentChange]) -> SubjectRecords:
    timeline: Timeline | None = None
    for c in folded:
        timeline = apply(timeline, c)
    return SubjectRecords(
        "s1",
        "present" if timeline is not None else "missing",
        timeline,
        [LoggedChange(c, 0, n) for n, c in enumerate(logged)],
        [],
        0,
        [],
        None,
        {},
        [],
    )


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml(PolicyPlan(partners=["client-01"], score_partners=["client-01"])))
    return load_policy(path)


def test_grant_keys_are_every_sinks_grant_and_extra_purpose(policy: Policy) -> None:
    assert grant_keys(policy) == [
        ("analytics", None),
        ("partner_sharing", "client-01"),
        ("profiling", "client-01"),
    ]


def test_a_change_is_pending_until_consent_state_shows_it(policy: Policy) -> None:
    grant = _change("g1", "GRANT", 0)
    withdraw = _change("w1", "WITHDRAW", 5)
    now = T0 + timedelta(minutes=10)
    folded_grant = _records([grant, withdraw], [grant])
    assert [c.change_id for c in pending_changes(folded_grant)] == ["w1"]
    rows = state_section(folded_grant.timeline, now, "t").rows
    (analytics, partner, profiling) = preferences(policy, folded_grant, rows)
    assert analytics.granted and analytics.pending is not None
    assert not analytics.wanted  # shown as "withdrawing", the toggle offers a grant
    assert not partner.granted and partner.pending is None and partner.status == "not granted"
    assert profiling.recipient_name == "Client Company 01 K.K."

    both = _records([grant, withdraw], [grant, withdraw])
    assert pending_changes(both) == []
    rows = state_section(both.timeline, now, "t").rows
    analytics = preferences(policy, both, rows)[0]
    assert (analytics.granted, analytics.pending, analytics.status) == (False, None, "withdrawn")


def test_an_erasure_pending_marks_every_key(policy: Policy) -> None:
    grant = _change("g1", "GRANT", 0)
    erase = _change("e1", "ERASE", 5, purpose=None)
    records = _records([grant, erase], [grant])
    rows = state_section(records.timeline, T0 + timedelta(minutes=6), "t").rows
    assert all(p.pending is not None for p in preferences(policy, records, rows))


def test_pages_of_rows_and_their_links() -> None:
    rows = list(range(120))
    first = page_of(rows, 1, 50, "p", {"id": "a&b"})
    assert (first.rows[0], len(first.rows), first.pages, first.previous) == (0, 50, 3, None)
    assert first.next == "?id=a%26b&p=2"
    last = page_of(rows, 99, 50, "p", {})
    assert (last.number, list(last.rows), last.next) == (3, list(range(100, 120)), None)
    assert page_of([], 1, 50, "p", {}).pages == 1


def test_cells() -> None:
    assert cell(None) == "-"
    assert cell(datetime(2026, 12, 1, 18, 0, tzinfo=UTC)) == "2026-12-01 18:00:00Z"
    assert cell(("a", "b")) == "a, b"
    assert cell(12345) == "12,345"
    assert cell({"x": 2}) == "x 2"


def test_the_timeline_svg_is_well_formed_and_escapes() -> None:
    changes = [
        _change("g1", "GRANT", 0, subject=MARKUP),
        _change("w1", "WITHDRAW", 30, subject=MARKUP),
        _change("g2", "GRANT", 5, "partner_sharing", "client-01", subject=MARKUP),
    ]
    timeline: Timeline | None = None
    for c in changes:
        timeline = apply(timeline, c)
    rows = interval_rows(timeline)
    assert [(r.purpose, r.end_reason) for r in rows] == [
        ("analytics", "withdrawn"),
        ("partner_sharing", None),
    ]
    svg = timeline_svg(rows, T0 + timedelta(hours=1), MARKUP)
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    assert root.get("role") == "img"
    assert MARKUP not in svg and "&lt;script&gt;" in svg
    assert timeline_svg([], T0, "s") == ""


def test_templates_escape_what_they_are_given() -> None:
    page = render("subject_search.html", {"nav": "subject", "csrf_token": MARKUP, "error": MARKUP})
    body = page.body.decode()
    assert MARKUP not in body
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in body
    assert "script-src" not in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"


def test_the_report_cache_reuses_reads_and_makes_one_at_a_time() -> None:
    now = [100.0]
    cache = ReportCache(15, clock=lambda: now[0])
    made: list[int] = []

    def make() -> int:
        made.append(1)
        return len(made)

    assert cache.get(("k",), make) == (1, 100.0)
    now[0] += 10
    assert cache.get(("k",), make) == (1, 100.0)  # within 15 s: reused
    now[0] += 6
    assert cache.get(("k",), make) == (2, 116.0)  # older: read again
    cache.drop(("k",))
    assert cache.get(("k",), make)[0] == 3

    # no reuse over time, but a request asked before a read finished shares it (a still
    # clock: the second request is asked no later than the read is made, whenever it runs)
    slow = ReportCache(0, clock=lambda: 0.0)
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow_make() -> str:
        calls.append(1)
        started.set()
        release.wait(10)
        return "report"

    results: list[object] = []
    first = threading.Thread(target=lambda: results.append(slow.get(("s",), slow_make)))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=lambda: results.append(slow.get(("s",), slow_make)))
    second.start()
    release.set()
    first.join(10)
    second.join(10)
    assert len(calls) == 1
    assert [r[0] for r in results] == ["report", "report"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("target", "goes_to"),
    [
        ("/console/subject?id=S1", "/console/subject?id=S1"),
        ("/console/recipient?id=client-01&p=2", "/console/recipient?id=client-01&p=2"),
        (None, "/console/overview"),
        ("https://evil.example/", "/console/overview"),
        ("//evil.example/console/", "/console/overview"),
        ("/console//evil.example", "/console/overview"),
        ("/console/\\evil.example", "/console/overview"),
        ("/console/login", "/console/overview"),
        ("/v1/subjects/S1/timeline", "/console/overview"),
    ],
)
def test_after_the_login_only_console_pages_are_gone_to(target: str | None, goes_to: str) -> None:
    assert safe_next(target) == goes_to
