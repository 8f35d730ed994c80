"""The consent service under test: its topics, fold worker processes (``consentgate consent
fold``), the write path in-process, and reading consent-state back."""

from __future__ import annotations

import contextlib
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from consentgate.consent.changelog import ChangeLog, Receipt
from consentgate.consent.requests import ChangeRequest
from consentgate.consent.service import ConsentService
from consentgate.consent.state_reader import StateReader, SubjectState
from consentgate.models.consent import ConsentAction, ConsentChange
from consentgate.policy.load import load_policy
from consentgate.serde import Serde
from consentgate_dev.services import ServiceProcess
from tests.integration.probe import free_port

__all__ = ["ConsentEnv", "FoldProcess", "new_change"]

_COORDINATOR_MOVING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


def new_change(
    subject_id: str,
    action: ConsentAction | str,
    purpose: str | None = None,
    recipient: str | None = None,
    *,
    at: datetime | None = None,
    recorded: datetime | None = None,
    change_id: str | None = None,
    method: str = "API",
) -> ConsentChange:
    """A raw change with caller-chosen times (tests only: the service sets its own)."""
    when = at or datetime.now(UTC)
    return ConsentChange(
        change_id=change_id or str(uuid.uuid4()),
        subject_id=subject_id,
        action=ConsentAction(action),
        purpose=purpose,
        recipient=recipient,
        effective_time=when,
        recorded_time=recorded or when,
        method=method,  # type: ignore[arg-type]  # pydantic coerces the enum's value
    )


class FoldProcess(ServiceProcess):
    """``consentgate consent fold`` as a subprocess, logging to ``workdir/fold-N.log``."""

    name = "fold"

    def __init__(
        self,
        env: ConsentEnv,
        index: int,
        instance_id: str | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.env = env
        port = free_port()
        super().__init__(
            [
                *("consent", "fold", "--policy", str(env.policy_path)),
                *("--changes-topic", env.changes, "--state-topic", env.state),
                *("--dlq-topic", env.dlq, "--group", env.fold_group),
                *("--web-port", str(port)),
                *(["--instance-id", instance_id] if instance_id else []),
                *(extra or []),
            ],
            {"CONSENTGATE_BOOTSTRAP": env.bootstrap},
            env.workdir / f"fold-{index}.log",
            port,
        )

    def wait_ready(self, timeout: float = 60.0, every: float = 0.2) -> dict[str, Any]:
        return super().wait_ready(timeout, every)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if head.split("{")[0] in (name, f"{name}_total"):
                    total += float(value)
        return total


class ConsentEnv:
    """Consent topics (``partitions`` each), a policy, the write path and fold workers."""

    def __init__(
        self,
        bootstrap: str,
        admin: AdminClient,
        workdir: Path,
        policy_path: Path,
        *,
        changes: str,
        state: str,
        dlq: str,
        partitions: int = 3,
        create: bool = True,
        state_config: dict[str, str] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.admin = admin
        self.workdir = workdir
        self.policy_path = policy_path
        self.policy = load_policy(policy_path)
        self.changes, self.state, self.dlq = changes, state, dlq
        self.partitions = partitions
        self.fold_group = f"fold-{changes}"
        self.serde = Serde()
        self.folds: list[FoldProcess] = []
        if create:
            self._create_topics(state_config or {})
        self.kafka = {"bootstrap.servers": bootstrap}
        self.changelog = ChangeLog(self.kafka, changes, self.serde)
        self.service = ConsentService(self.policy, self.changelog)
        self._reader: StateReader | None = None

    def _create_topics(self, state_config: dict[str, str]) -> None:
        compact = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", **state_config}
        new = [
            NewTopic(t, num_partitions=self.partitions, replication_factor=1, config=cfg)
            for t, cfg in ((self.changes, {}), (self.state, compact), (self.dlq, {}))
        ]
        for future in self.admin.create_topics(new, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # shared with a RouterEnv that made them
                future.result(timeout=30)

    # -- fold -------------------------------------------------------------------------------
    def start_fold(
        self,
        *,
        instance_id: str | None = None,
        wait_ready: bool = True,
        extra: list[str] | None = None,
    ) -> FoldProcess:
        fold = FoldProcess(self, len(self.folds), instance_id, extra)
        self.folds.append(fold)
        if wait_ready:
            fold.wait_ready()
        return fold

    def stop_folds(self) -> None:
        for fold in self.folds:
            fold.stop()

    # -- writing ----------------------------------------------------------------------------
    def request(self, **fields: Any) -> ConsentChange:
        """A change through the service's rules (not yet written)."""
        return self.service.change(ChangeRequest(**fields), actor="test")

    def record(
        self, changes: ConsentChange | Iterable[ConsentChange], *, wait: float = 30.0
    ) -> list[Receipt]:
        """Append through the write path; with ``wait``, until consent-state shows them."""
        batch = [changes] if isinstance(changes, ConsentChange) else list(changes)
        receipts = self.service.record(batch)
        if wait:
            for subject in {c.subject_id for c in batch}:
                ids = [c.change_id for c in batch if c.subject_id == subject]
                self.wait_visible(subject, ids, wait)
        return receipts

    def consent(
        self,
        subject: str,
        action: str,
        purpose: str | None = None,
        recipient: str | None = None,
        *,
        wait: float = 30.0,
        **fields: Any,
    ) -> ConsentChange:
        change = self.request(
            subject_id=subject, action=action, purpose=purpose, recipient=recipient, **fields
        )
        self.record(change, wait=wait)
        return change

    def settle(self, timeout: float = 120.0) -> None:
        """Wait until the fold has committed past everything now in consent.changes."""
        parts = [TopicPartition(self.changes, p) for p in range(self.partitions)]
        probe = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.fold_group})
        try:
            ends = {tp.partition: probe.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
            deadline = time.monotonic() + timeout
            while True:
                try:
                    done = {tp.partition: tp.offset for tp in probe.committed(parts, timeout=10)}
                except KafkaException as exc:  # a new broker's coordinator may still load
                    err = exc.args[0]
                    if time.monotonic() > deadline or not (
                        err.retriable() or err.code() in _COORDINATOR_MOVING
                    ):
                        raise
                    time.sleep(0.2)
                    continue
                if all(done[p] >= end for p, end in ends.items() if end > 0):
                    return
                if time.monotonic() > deadline:
                    logs = "\n".join(f.tail(30) for f in self.folds) or "(no fold running)"
                    raise AssertionError(f"fold at {done}, log ends {ends}\n{logs}")
                time.sleep(0.1)
        finally:
            probe.close()

    # -- reading ----------------------------------------------------------------------------
    @property
    def reader(self) -> StateReader:
        if self._reader is None:
            self._reader = StateReader(self.kafka, self.state, self.serde)
        return self._reader

    def subject_state(self, subject: str) -> SubjectState:
        return self.reader.read(subject)

    def wait_visible(self, subject: str, ids: list[str], timeout: float = 30.0) -> SubjectState:
        state = self.reader.wait_visible(subject, ids, timeout)
        if state is None:
            logs = "\n".join(f.tail(30) for f in self.folds) or "(no fold running)"
            raise AssertionError(f"{subject}: {ids} not in {self.state} in {timeout} s\n{logs}")
        return state

    def close(self) -> None:
        self.stop_folds()
        self.changelog.close()
        if self._reader is not None:
            self._reader.close()

    def delete_topics(self) -> None:
        topics = [self.changes, self.state, self.dlq]
        for future in self.admin.delete_topics(topics, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # best-effort cleanup
                future.result(timeout=30)
