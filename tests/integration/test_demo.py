"""``consentgate demo`` as a new user runs it: it starts its own broker, proves each
retraction it claims, and its last words are the audit's verdict and where the report is.

The demo here starts and stops a local broker of its own (free ports, a temporary state
folder, the jars already in the cache), so the end of the run is what a user sees, broker
shutdown included: clients still open when the broker stops printed librdkafka's
"Connect to ... failed: Connection refused" after the verdict.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from consentgate_dev.jvm import free_port
from consentgate_dev.screenshots import chromium_executable

pytestmark = pytest.mark.integration

RETRACTION = re.compile(r"^\s+(\S+): retraction written ([\d,]+) ms after the request$")
POSTED = re.compile(r"^\s+POST withdrawal (client-\d+): change ")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    state = tmp_path_factory.mktemp("demo-state")
    env = {
        **os.environ,
        "CONSENTGATE_STATE_DIR": str(state),
        "CONSENTGATE_BROKER_PORT": str(free_port()),
        "CONSENTGATE_BROKER_CONTROLLER_PORT": str(free_port()),
    }
    env.pop("CONSENTGATE_BOOTSTRAP", None)  # its own broker, started and stopped by it
    return subprocess.run(
        [sys.executable, "-m", "consentgate", "demo", "--students", "300", "--partners", "3"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_the_demo_passes_its_audit(demo_run: subprocess.CompletedProcess[str]) -> None:
    assert demo_run.returncode == 0, demo_run.stdout[-4000:] + demo_run.stderr[-4000:]
    assert "RESULT: PASS" in demo_run.stdout


def test_every_withdrawal_is_followed_by_its_retraction_with_a_latency(
    demo_run: subprocess.CompletedProcess[str],
) -> None:
    lines = demo_run.stdout.splitlines()
    posted = [m.group(1) for line in lines if (m := POSTED.match(line))]
    retracted = {
        m.group(1): int(m.group(2).replace(",", ""))
        for line in lines
        if (m := RETRACTION.match(line))
    }
    assert posted, demo_run.stdout
    assert len(retracted) == len(posted), (posted, retracted)
    for partner in posted:
        (topic,) = [t for t in retracted if t.startswith(f"partner.{partner}.browsing.")]
        assert retracted[topic] >= 0


def test_nothing_follows_the_verdict_but_the_report_s_path(
    demo_run: subprocess.CompletedProcess[str],
) -> None:
    lines = [line for line in demo_run.stdout.splitlines() if line.strip()]
    (verdict,) = [i for i, line in enumerate(lines) if line.startswith("RESULT: ")]
    after = [line.strip() for line in lines[verdict + 1 :]]
    assert len(after) == 2, after
    assert after[0].startswith("audit report: "), after
    assert after[1].startswith("console screenshots: "), after
    noise = [
        line
        for line in demo_run.stderr.splitlines()
        if "Connection refused" in line
        or re.search(r"\bConnect to .* failed", line)
        or "Traceback" in line
        or " ERROR " in line
    ]
    assert noise == [], "\n".join(noise)


def test_the_demo_saves_the_console_s_screenshots_beside_its_summary(
    demo_run: subprocess.CompletedProcess[str],
) -> None:
    if chromium_executable() is None:
        pytest.skip("no chromium here (apt-get install chromium): the demo saves no pictures")
    (line,) = [x for x in demo_run.stdout.splitlines() if "console screenshots: " in x]
    folder = Path(line.rsplit(" in ", 1)[1])
    summary = json.loads((folder / "summary.json").read_text())
    names = ["console-overview.png", "console-subject.png", "console-recipient.png"]
    assert summary["screenshots"] == names
    for name in names:
        png = (folder / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000, name
