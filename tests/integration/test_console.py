"""The console in a real browser (Debian's chromium through Playwright), on the real broker
with a running router:

- a subject opens their link, withdraws analytics with the page's plain form; the page says
  pending until consent-state shows it, then enforced; the router denies their next event
  and retracts their analytics records, which the page then lists;
- the operators' subject and recipient pages list exactly what ``consentgate report
  subject|recipient --json`` lists (and the CSV download is ``--csv``'s output);
- axe-core finds no serious or critical violation on any page;
- the development package's ``save_screenshots`` saves the three pictures.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from consentgate.console.render import cell
from consentgate_dev.screenshots import save_screenshots
from tests.integration.console_harness import (
    PASSWORD,
    USER,
    ConsoleProcess,
    axe_violations,
    cli,
    launch_browser,
)
from tests.integration.router_harness import RouterEnv, wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 180.0
ANALYTICS = "analytics"
PARTNER = "partner.client-01.browsing"
DENIED_AFTER_WITHDRAWAL = {"not_granted_at_event_time", "withdrawn", "consent_state_stale"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_browser()


@pytest.fixture
def console(router_env: RouterEnv) -> Iterator[ConsoleProcess]:
    process = ConsoleProcess(
        router_env,
        CONSENTGATE_CONSOLE_AUDIT_JSON=str(router_env.workdir / "audit.json"),
        CONSENTGATE_CONSOLE_AUDIT_HTML=str(router_env.workdir / "audit.html"),
    )
    try:
        yield process
    finally:
        code = process.stop()
    assert code == 0, f"console exit {code}:\n{process.tail()}"


def _poll(check: Any, what: str, timeout: float = TIMEOUT) -> Any:
    """``check()`` until it returns a true value (AssertionError naming ``what``)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1.0)
    raise AssertionError(f"{what}: not in {timeout:.0f} s (last: {last!r})")


def _no_axe_violations(page: Any, name: str) -> None:
    found = axe_violations(page)
    assert not found, f"axe on {name}:\n" + "\n".join(found)


def _column(page: Any, table: str, column: str) -> list[str]:
    return [
        t.strip() for t in page.locator(f"#{table} tbody td[data-col='{column}']").all_inner_texts()
    ]


def _rows(page: Any, table: str, columns: tuple[str, ...]) -> list[tuple[str, ...]]:
    got = [_column(page, table, c) for c in columns]
    return sorted(zip(*got, strict=True)) if got else []


def _expected(doc: dict[str, Any], section: str, columns: tuple[str, ...]) -> list[tuple[str, ...]]:
    return sorted(
        tuple(cell(tuple(v) if isinstance(v, list) else v) for v in (r[c] for c in columns))
        for r in doc["sections"][section]
    )


def _drop_replay_topics(env: RouterEnv) -> None:
    own = set(env.all_topics())
    topics = env.admin.list_topics(timeout=10).topics
    extra = [t for t in topics if env.plan.suffix in t and t not in own]
    if not extra:
        return
    futures = env.admin.delete_topics(extra, operation_timeout=30)
    for future in futures.values():
        with contextlib.suppress(Exception):  # best-effort cleanup
            future.result(timeout=30)


def _login(page: Any, url: str) -> None:
    page.goto(f"{url}/console/overview")
    assert page.get_by_role("heading", name="Log in").is_visible()
    _no_axe_violations(page, "the login page")
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")  # the keyboard alone logs in
    page.wait_for_url(f"{url}/console/overview")


def _state_cell(page: Any, purpose: str, recipient: str = "") -> str:
    row = page.locator(f"tr[data-purpose='{purpose}'][data-recipient='{recipient}']")
    return str(row.locator("td.state").inner_text()).strip()


def test_a_subject_withdraws_on_the_page_and_the_router_enforces_it(
    router_env: RouterEnv, console: ConsoleProcess, browser: Any, tmp_path: Path
) -> None:
    env = router_env
    who = f"cons-{uuid.uuid4().hex[:10]}"
    for fold in env.consents.folds:
        fold.wait_ready(TIMEOUT)
    env.consent(who, "GRANT", "analytics")
    env.consent(who, "GRANT", "partner_sharing", "client-01")
    env.start_router()
    console.wait_ready(TIMEOUT)
    before = env.browse(who, 3)
    decided = env.decisions_by_event(len(before), timeout=TIMEOUT)
    assert all(decided[e][ANALYTICS] == "allowed" for e in before), decided
    wait_for(lambda: env.read(env.plan.analytics_topic), timeout=TIMEOUT)
    wait_for(lambda: env.read(env.provisions), timeout=TIMEOUT)

    link = cli(console.environ, "consent", "link", who, "--ttl", "30m").strip()
    context = browser.new_context(bypass_csp=True)  # axe is injected as a script
    context.set_default_timeout(TIMEOUT * 1000)
    me = context.new_page()
    me.goto(link)
    assert me.url == f"{console.url}/console/me"
    assert _state_cell(me, "analytics").startswith("enforced: allowed")
    assert me.locator("#received tbody tr").count() >= 1  # client-01 got their data
    _no_axe_violations(me, "the preference page")

    # withdraw with the keyboard: focus the row's button and press Enter (a plain POST)
    button = me.locator("tr[data-purpose='analytics'][data-recipient=''] button")
    assert button.inner_text().strip() == "Withdraw"
    button.focus()
    button.press("Enter")
    me.wait_for_url(f"{console.url}/console/me?sent=1")
    first = _state_cell(me, "analytics")
    assert first.startswith(("pending: withdrawing", "enforced: not allowed")), first

    def enforced() -> bool:
        me.goto(f"{console.url}/console/me")
        return _state_cell(me, "analytics").startswith("enforced: not allowed")

    _poll(enforced, "the withdrawal shown enforced")
    assert _state_cell(me, "partner_sharing", "client-01").startswith("enforced: allowed")
    history = me.locator("#history tbody tr").first.inner_text()
    assert "withdraw" in history and "WEB_FORM" in history, history

    # the router denies the next event and retracts the earlier analytics records
    (after,) = env.browse(who, 1)
    decided = env.decisions_by_event(len(before) + 1, timeout=TIMEOUT)
    assert decided[after][ANALYTICS] in DENIED_AFTER_WITHDRAWAL, decided[after]
    assert decided[after][PARTNER] == "allowed", decided[after]
    wait_for(lambda: env.retractions(env.plan.analytics_topic), timeout=TIMEOUT)
    assert after not in env.sink_event_ids(env.plan.analytics_topic)

    def retraction_shown() -> bool:
        me.goto(f"{console.url}/console/me")
        return ANALYTICS in " ".join(me.locator("#retractions li").all_inner_texts())

    _poll(retraction_shown, "the retraction on the preference page")
    _no_axe_violations(me, "the preference page after the withdrawal")

    # the operators' pages: what `consentgate report` lists, and accessible
    ops = browser.new_context(bypass_csp=True)
    ops.set_default_timeout(TIMEOUT * 1000)
    page = ops.new_page()
    _login(page, console.url)
    _no_axe_violations(page, "the overview")
    assert page.locator("#overview_decisions").count() == 1, page.content()
    audit_part = page.locator("section[aria-labelledby='h-audit']")
    assert "Not available: the audit report" in audit_part.inner_text()  # no audit run yet
    policy = str(env.policy_path)
    report = json.loads(
        cli(console.environ, "report", "subject", who, "--json", "--policy", policy)
    )
    page.goto(f"{console.url}/console/subject?" + urlencode({"id": who, "size": "1000"}))
    _no_axe_violations(page, "the subject page")
    assert page.locator("svg[role='img']").count() == 1
    compare = {
        "consent_changes": ("change_id", "action", "purpose", "recipient", "method"),
        "current_state": ("purpose", "recipient", "status", "change_id"),
        "provisions": ("provision_date", "recipient_id", "sink", "consent_change_id"),
        "retractions": ("sink", "change_id", "reason", "purpose"),
        "decisions": ("sink", "allowed", "denied", "deny_reasons"),
    }
    for section, columns in compare.items():
        expected = _expected(report, section, columns)
        assert _rows(page, section, columns) == expected, section
        assert expected or section == "current_state", f"{section}: nothing to compare"
    latest = page.locator("#latest_decisions tbody tr").count()
    assert latest == report["totals"]["events_decided"] == len(before) + 1

    recipient = json.loads(
        cli(console.environ, "report", "recipient", "client-01", "--json", "--policy", policy)
    )
    page.goto(f"{console.url}/console/recipient?id=client-01&size=1000")
    _no_axe_violations(page, "the recipient page")
    columns = ("provision_date", "subject_id", "sink", "purpose", "consent_change_id")
    assert _rows(page, "provisions", columns) == _expected(recipient, "provisions", columns)
    csv = cli(console.environ, "report", "recipient", "client-01", "--csv", "--policy", policy)
    download = page.request.get(f"{console.url}/console/recipient.csv?id=client-01")
    assert download.status == 200
    assert download.text() == csv
    # a finished replay: its committed progress in Kafka, its own report from the folder
    replay_id = f"console-{uuid.uuid4().hex[:8]}"
    try:
        out = cli(
            console.environ,
            *("replay", "--source", env.plan.browsing_topic, "--policy", policy),
            *("--from", "earliest", "--consent", "now", "--into", "cz", "--id", replay_id),
            "--json",
        )
    finally:
        _drop_replay_topics(env)
    (env.workdir / "replays" / f"{replay_id}.json").write_text(out)
    page.goto(f"{console.url}/console/replays")
    job = page.locator("#replay_jobs tr", has_text=replay_id)
    assert "finished" in job.inner_text() and "*.cz" in job.inner_text(), job.inner_text()
    assert page.get_by_role("heading", name=re.compile(replay_id)).count() == 1
    # the last audit: its verdict on the overview, its HTML report linked
    audit = subprocess.run(
        [
            *(sys.executable, "-m", "consentgate", "audit", "--json", "--policy", policy),
            *("--html", str(env.workdir / "audit.html")),
        ],
        env={**os.environ, **console.environ},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert audit.returncode in (0, 1), audit.stderr[-3000:]
    (env.workdir / "audit.json").write_text(audit.stdout)
    verdict = json.loads(audit.stdout)["verdict"]
    page.goto(f"{console.url}/console/overview")
    assert f"Verdict: {verdict}" in audit_part.inner_text(), audit_part.inner_text()
    with page.expect_navigation():
        page.get_by_role("link", name="The audit's HTML report").click()
    assert page.url == f"{console.url}/console/audit.html"
    assert verdict in page.content()
    for path, name in (("/console/recipients", "recipients"), ("/console/replays", "replays")):
        page.goto(console.url + path)
        _no_axe_violations(page, f"the {name} page")
    page.goto(f"{console.url}/console/subject")
    _no_axe_violations(page, "the subject search page")

    # a thread of its own: this one runs the test's Playwright (one sync instance a thread)
    with ThreadPoolExecutor(1) as pool:
        saved = pool.submit(
            save_screenshots, console.url, (USER, PASSWORD), who, "client-01", tmp_path / "png"
        ).result(timeout=TIMEOUT)
    assert [p.name for p in saved] == [
        "console-overview.png",
        "console-subject.png",
        "console-recipient.png",
    ]
    for png in saved:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    context.close()
    ops.close()
