"""Rendering: the Jinja2 environment (autoescaping on, templates shipped in the package),
report cells as text, pages of rows, and the security headers of every console response.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

__all__ = ["HEADERS", "STATIC_HEADERS", "Page", "cell", "page_of", "render", "stylesheet"]

HEADERS = {
    # nothing but this origin's stylesheet and forms; no script, no frame, no fetch
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a preference link's token never leaves in a Referer
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}

_env = Environment(
    loader=PackageLoader("consentgate.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def cell(value: object) -> str:
    """A report cell as text: times in UTC to the second, lists joined, empty as a dash."""
    text: str
    if value is None or value == "":
        text = "-"
    elif isinstance(value, datetime):
        text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    elif isinstance(value, date):
        text = value.isoformat()
    elif isinstance(value, tuple | list):
        text = ", ".join(str(v) for v in value) or "-"
    elif isinstance(value, Mapping):
        text = ", ".join(f"{k} {v:,}" for k, v in value.items()) or "-"
    elif isinstance(value, int) and not isinstance(value, bool):
        text = f"{value:,}"
    else:
        text = str(value)
    return text


_env.filters["cell"] = cell


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ``total`` rows, and the links to its neighbours."""

    rows: Sequence[Any]
    number: int
    pages: int
    total: int
    first: int  # 1-based index of the first row shown
    previous: str | None
    next: str | None


def page_of(
    rows: Sequence[Any],
    number: int,
    size: int,
    param: str,
    query: Mapping[str, str],
) -> Page:
    """Page ``number`` (1-based, clamped) of ``rows``; links keep the other query values."""
    pages = max(math.ceil(len(rows) / size), 1)
    number = min(max(number, 1), pages)
    start = (number - 1) * size

    def link(n: int) -> str:
        return "?" + urlencode({**query, param: str(n)})

    return Page(
        rows[start : start + size],
        number,
        pages,
        len(rows),
        start + 1,
        link(number - 1) if number > 1 else None,
        link(number + 1) if number < pages else None,
    )


def render(template: str, context: Mapping[str, Any], status: int = 200) -> HTMLResponse:
    body = _env.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status, headers=HEADERS)


STATIC_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=300"}


@functools.cache
def stylesheet() -> str:
    return (resources.files("consentgate.console") / "templates" / "console.css").read_text(
        encoding="utf-8"
    )
