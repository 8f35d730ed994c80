"""``consentgate consent link SUBJECT [--ttl DURATION]``: print a subject's preference link;
``consentgate consent console-password``: print the scrypt hash of a password (read from the
terminal, or stdin) for ``CONSENTGATE_CONSOLE_PASSWORD_HASH``.

The link key and the public address come from ``CONSENTGATE_CONSOLE_LINK_KEY`` and
``CONSENTGATE_CONSOLE_BASE_URL``; the link is valid for ``--ttl`` (default
``CONSENTGATE_CONSOLE_LINK_TTL``, 7 days). Whoever holds it can see and change the subject's
consent until then: hand it to the subject only (the site's own login does that).
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from typing import Any

__all__ = ["duration", "register"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


def duration(text: str) -> float:
    """An argparse type: seconds, or a number with s, m, h or d (``15m``, ``7d``)."""
    found = _DURATION.fullmatch(text.strip())
    if found is None or float(found.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a positive duration such as 3600, 15m, 7d")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def register(subparsers: Any) -> None:
    link = subparsers.add_parser(
        "link", help="print a subject's signed, expiring preference-page link"
    )
    link.add_argument("subject")
    link.add_argument(
        "--ttl", type=duration, help="how long it is valid (e.g. 15m, 2h, 7d; default 7d)"
    )
    link.add_argument("--base-url", help="the console's public address (default: settings)")
    link.set_defaults(handler=_link)
    password = subparsers.add_parser(
        "console-password", help="print the scrypt hash of a console password"
    )
    password.set_defaults(handler=_password)


def _link(args: argparse.Namespace) -> int:
    from consentgate.console.links import LinkSigner  # noqa: PLC0415
    from consentgate.console.settings import MIN_KEY_LENGTH, ConsoleSettings  # noqa: PLC0415

    settings = ConsoleSettings()
    if settings.link_key is None:
        print("set CONSENTGATE_CONSOLE_LINK_KEY (the console's link key)", file=sys.stderr)
        return 78
    key = settings.link_key.get_secret_value()
    if len(key) < MIN_KEY_LENGTH:
        print(f"CONSENTGATE_CONSOLE_LINK_KEY needs {MIN_KEY_LENGTH}+ characters", file=sys.stderr)
        return 78
    try:
        url = LinkSigner(key).url(
            args.base_url or settings.base_url, args.subject, args.ttl or settings.link_ttl
        )
    except ValueError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    print(url)
    return 0


def _password(args: argparse.Namespace) -> int:
    from consentgate.console.auth import hash_password  # noqa: PLC0415

    if sys.stdin.isatty():
        password = getpass.getpass("console password: ")
        if getpass.getpass("again: ") != password:
            print("the two passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        print("a console password needs 12 characters or more", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0
