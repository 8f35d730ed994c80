"""What the ``consentgate`` command imports before it parses its arguments."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def test_the_cli_does_not_import_faust_so_faust_cannot_parse_its_argv() -> None:
    """faust's ``__init__`` reads ``-L``/``--loop`` from ``sys.argv``: imported on the CLI's
    path, it took the router's ``--loop.commit-interval 0.2`` for an event loop ``0.2`` and
    the router died at start (only ``consent fold`` may import it, when it runs)."""
    code = (
        "import sys\n"
        "sys.argv = ['consentgate', 'router', '--loop.commit-interval', '0.2']\n"
        "from consentgate.cli import build_parser\n"
        "build_parser()\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('faust', 'mode'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(  # a fresh interpreter: this one may have imported faust already
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
