"""Is a background process (a broker or registry JVM we started) still alive?"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["alive"]


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a reaped or zombie process counts as dead."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        waited = 0  # not our child: ask /proc
    if waited == pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    return stat.split(")")[-1].split()[0] != "Z"
