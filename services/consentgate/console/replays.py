"""The replays page's data: what ``consentgate replay`` leaves behind.

A replay commits its progress as the offsets of its group ``consentgate-replay-<id>`` on
the source topic, each with its pin in the metadata (:class:`~consentgate.ops.replay.RunPin`:
the pinned end offset and the output suffix). So a job's progress is its committed offset
against the pinned end, per partition: finished when every partition reached its end.
Whether an unfinished job is running cannot be read from Kafka (it holds no group
membership): the console compares with its previous look and says "advancing" or "no
progress since". Finished reports are read from a folder of ``replay --json`` outputs, if
one is configured. Blocking: run in the threadpool.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient

from consentgate.ops.replay import RunPin

__all__ = ["GROUP_PREFIX", "ReplayJob", "ReplayWatch", "read_reports"]

log = logging.getLogger(__name__)

GROUP_PREFIX = "consentgate-replay-"
MAX_REPORTS = 200


@dataclass
class ReplayJob:
    replay_id: str
    source: str
    suffix: str | None
    partitions: list[tuple[int, int, int]]  # partition, committed, pinned end
    status: str  # "finished" | "advancing" | "no progress since ..." | "first look"

    @property
    def remaining(self) -> int:
        return sum(max(end - done, 0) for _, done, end in self.partitions)

    @property
    def done(self) -> int:
        return sum(min(done, end) for _, done, end in self.partitions)

    @property
    def into(self) -> str:
        return f"*.{self.suffix}" if self.suffix else "the live sinks"


class ReplayWatch:
    """The replay groups now, with "advancing" judged against this process's last look."""

    def __init__(self, clock: Any = time.time) -> None:
        self.clock = clock
        self._last: dict[str, tuple[int, float]] = {}  # id -> (remaining, since when)
        self._lock = threading.Lock()

    def jobs(self, kafka: dict[str, Any]) -> list[ReplayJob]:
        admin = AdminClient(kafka)
        listed = admin.list_consumer_groups().result(timeout=30)
        groups = sorted(g.group_id for g in listed.valid if g.group_id.startswith(GROUP_PREFIX))
        jobs = []
        for group in groups:
            request = ConsumerGroupTopicPartitions(group)
            answer = admin.list_consumer_group_offsets([request])[group].result(timeout=30)
            by_topic: dict[str, list[tuple[int, int, int]]] = {}
            suffix: str | None = None
            for tp in answer.topic_partitions or []:
                pin = RunPin.decode(tp.metadata)
                if pin is None or tp.offset < 0:
                    continue
                suffix = pin.suffix
                by_topic.setdefault(tp.topic, []).append((tp.partition, tp.offset, pin.end))
            for topic, parts in sorted(by_topic.items()):
                job = ReplayJob(group[len(GROUP_PREFIX) :], topic, suffix, sorted(parts), "")
                job.status = self._status(group + "\0" + topic, job.remaining)
                jobs.append(job)
        return jobs

    def _status(self, key: str, remaining: int) -> str:
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if remaining == 0:
                self._last[key] = (0, now)
                return "finished"
            if last is None:
                self._last[key] = (remaining, now)
                return "not finished (first look: reload to see whether it advances)"
            if remaining < last[0]:
                self._last[key] = (remaining, now)
                return "advancing"
            since = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(last[1]))
            return f"no progress since {since} (interrupted? run it again with the same --id)"


def read_reports(folder: Path | None) -> tuple[list[dict[str, Any]], str | None]:
    """The ``replay --json`` reports in ``folder`` (newest first), and why none if so."""
    if folder is None:
        return [], (
            "no report folder configured (CONSENTGATE_CONSOLE_REPLAY_REPORTS: a folder of "
            "consentgate replay --json outputs)"
        )
    try:
        files = sorted(folder.glob("*.json"), key=lambda f: f.stat().st_mtime, reverse=True)
    except OSError as exc:
        return [], f"the report folder {folder} cannot be read: {exc}"
    reports = []
    for path in files[:MAX_REPORTS]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("replays: skipping %s: %s", path, exc)
            continue
        if isinstance(data, dict) and "replay_id" in data:
            data["file"] = path.name
            reports.append(data)
    return reports, None if reports else f"no replay reports in {folder}"
