"""The consent fold's settings: its topics and the worker's options.

Kept apart from ``fold_app`` (faust): importing faust parses ``sys.argv`` for its own
``-L``/``--loop`` options (it took the router's ``--loop.commit-interval 0.2`` for an event
loop named ``0.2``), so nothing on the CLI's import path may import faust.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FoldConfig", "FoldTopics"]


@dataclass(frozen=True, slots=True)
class FoldTopics:
    changes: str = "consent.changes.v1"
    state: str = "consent.state.v1"
    dead_letters: str = "consentgate.dlq.v1"


@dataclass(frozen=True, slots=True)
class FoldConfig:
    bootstrap: str
    topics: FoldTopics
    group: str = "consentgate-fold"
    instance_id: str | None = None
    batch: int = 1000
    within: float = 0.01
    session_timeout: float = 10.0
    commit_interval: float = 0.5
    web_host: str = "127.0.0.1"
    web_port: int = 0
    credentials: Any = None
