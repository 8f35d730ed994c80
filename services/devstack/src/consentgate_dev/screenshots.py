"""Pictures of the console: log in with Playwright and Debian's chromium, save PNGs of the
overview, one subject's page and one recipient's page.

No browser is downloaded (``playwright install`` is never run): the executable is
``CONSENTGATE_CHROMIUM`` or ``/usr/bin/chromium``. Without one (or without the playwright
package) :func:`save_screenshots` logs why and returns ``[]``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from urllib.parse import urlencode

__all__ = ["chromium_executable", "save_screenshots"]

log = logging.getLogger(__name__)

TIMEOUT_MS = 180_000


def chromium_executable() -> str | None:
    for candidate in (
        os.environ.get("CONSENTGATE_CHROMIUM"),
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        shutil.which("chromium"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def save_screenshots(
    base_url: str,
    credentials: tuple[str, str],
    subject_id: str,
    recipient_id: str,
    out_dir: Path,
) -> list[Path]:
    """Log in at ``base_url`` with ``credentials`` (user, password) and save
    ``console-overview.png``, ``console-subject.png`` and ``console-recipient.png`` (full
    pages) in ``out_dir``; the paths saved, or [] (with a logged reason) without a browser."""
    executable = chromium_executable()
    if executable is None:
        log.warning("screenshots skipped: no chromium (apt-get install chromium)")
        return []
    try:
        from playwright.sync_api import Error, sync_playwright  # noqa: PLC0415
    except ImportError:
        log.warning("screenshots skipped: the playwright package is not installed")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    base = base_url.rstrip("/")
    pages = [
        ("console-overview.png", "/console/overview"),
        ("console-subject.png", "/console/subject?" + urlencode({"id": subject_id})),
        ("console-recipient.png", "/console/recipient?" + urlencode({"id": recipient_id})),
    ]
    saved: list[Path] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(f"{base}/console/login")
                page.get_by_label("User name").fill(credentials[0])
                page.get_by_label("Password").fill(credentials[1])
                page.get_by_role("button", name="Log in").click()
                page.wait_for_url(f"{base}/console/overview")
                for name, path in pages:
                    page.goto(base + path)
                    target = out_dir / name
                    page.screenshot(path=str(target), full_page=True)
                    saved.append(target)
            finally:
                browser.close()
    except Error as exc:
        log.warning("screenshots stopped after %d of %d: %s", len(saved), len(pages), exc)
    return saved
