"""A router under test: its own topics (suffixed), policy, consent writer and worker process."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from consentgate.models.consent import ConsentChange
from consentgate.policy.pseudonym import PseudonymKeys
from consentgate.serde import Serde
from consentgate_dev.demo.policygen import PolicyPlan, policy_yaml
from consentgate_dev.services import ServiceProcess
from tests.integration.consent_harness import ConsentEnv, FoldProcess, new_change
from tests.integration.probe import free_port
from tests.kafka_helpers import consume_all, job_view, produce

MASTER_KEY = "test-master-key-0123456789abcdef"
PARTITIONS = 3


def wait_for(fetch: Callable[[], list[Any]], timeout: float = 20.0) -> list[Any]:
    """``fetch()`` until it returns something (AssertionError after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fetch()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError("nothing arrived")


class RouterProcess(ServiceProcess):
    """``consentgate router`` as a subprocess, logging to ``workdir/router-N.log``."""

    name = "router"

    def __init__(
        self,
        env: RouterEnv,
        args: list[str],
        index: int,
        instance_id: str | None = None,
        command: list[str] | None = None,
    ) -> None:
        """``command``: the ``consentgate`` to run (default: ``python -m consentgate``)."""
        self.env = env
        port = free_port()
        args = [
            "router",
            *args,
            *("--web-port", str(port)),
            *("--instance-id", instance_id or f"r{index}-{port}"),
        ]
        super().__init__(
            args,
            {
                "CONSENTGATE_BOOTSTRAP": env.bootstrap,
                "CONSENTGATE_PSEUDONYM_MASTER_KEY": MASTER_KEY,
                "CONSENTGATE_STATE_DIR": str(env.workdir / f"state-{index}"),
            },
            env.workdir / f"router-{index}.log",
            port,
            append=False,
            program=[*command, *args] if command else None,
        )

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())


class RouterEnv:
    """Topics, policy and helpers for one test."""

    def __init__(
        self,
        bootstrap: str,
        admin: AdminClient,
        workdir: Path,
        plan: PolicyPlan,
        partitions: int = PARTITIONS,
    ):
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.admin = admin
        self.workdir = workdir
        self.plan = plan
        self.changes = plan.changes_topic
        self.state = plan.state_topic
        self.decisions = plan.decisions_topic
        self.provisions = plan.provisions_topic
        self.dlq = plan.dlq_topic
        self.policy_path = workdir / "policy.yaml"
        self.policy_path.write_text(policy_yaml(plan))
        self.serde = Serde()
        self.keys = PseudonymKeys(master_key=pydantic.SecretStr(MASTER_KEY))
        self.produced: list[str] = []  # every event id this env wrote (browse, score)
        self.routers: list[RouterProcess] = []
        self._create_topics()
        self.consents = ConsentEnv(
            bootstrap,
            admin,
            workdir,
            self.policy_path,
            changes=self.changes,
            state=self.state,
            dlq=self.dlq,
            partitions=partitions,
            create=False,
        )
        self.consents.start_fold(wait_ready=False)  # starts beside the test's own setup
        self._unsettled = False

    def all_topics(self) -> list[str]:
        return [*self.plan.core_topics(), *self.plan.sink_topics()]

    def _create_topics(self) -> None:
        compact = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
        new = [
            NewTopic(
                t,
                num_partitions=self.partitions,
                replication_factor=1,
                config=compact if t == self.state else {},
            )
            for t in self.all_topics()
        ]
        for future in self.admin.create_topics(new, operation_timeout=30).values():
            future.result(timeout=30)

    def delete_topics(self) -> None:
        for future in self.admin.delete_topics(self.all_topics(), operation_timeout=30).values():
            with contextlib.suppress(Exception):  # best-effort cleanup
                future.result(timeout=30)

    # -- router ---------------------------------------------------------------------------
    def start_router(
        self,
        *,
        consent_wait: float = 3.0,
        app_id: str | None = None,
        wait_ready: bool = True,
        instance_id: str | None = None,
        extra: list[str] | None = None,
        command: list[str] | None = None,
    ) -> RouterProcess:
        args = [
            "--policy",
            str(self.policy_path),
            "--app-id",
            app_id or f"router{self.plan.suffix}",
            "--consent-wait",
            str(consent_wait),
            *self.plan.router_topic_args(),
            *(extra or []),
        ]
        self.settle()
        router = RouterProcess(self, args, len(self.routers), instance_id, command)
        self.routers.append(router)
        if wait_ready:
            router.wait_ready()
        return router

    def stop_all(self) -> None:
        for router in self.routers:
            router.stop()
        self.consents.close()

    # -- consent fold ---------------------------------------------------------------------
    def start_fold(self) -> FoldProcess:
        """The running fold, or a new one (after ``stop_fold``)."""
        live = [f for f in self.consents.folds if f.proc.poll() is None]
        return live[0] if live else self.consents.start_fold()

    def stop_fold(self) -> None:
        self.consents.stop_folds()
        self.consents.folds.clear()

    def _ensure_fold(self) -> None:
        self.start_fold()

    # -- input ----------------------------------------------------------------------------
    def consent(
        self,
        subject: str,
        action: str,
        purpose: str | None = None,
        recipient: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Record a change through the consent service and wait until consent-state shows
        it (``at``: a change effective then, recorded now, written to the log directly)."""
        self._ensure_fold()
        if at is None:
            self.consents.consent(subject, action, purpose, recipient)
        else:
            change = new_change(subject, action, purpose, recipient, at=at)
            change = change.model_copy(update={"recorded_time": min(at, datetime.now(UTC))})
            self.consents.record(change)

    def append(
        self, changes: ConsentChange | Iterable[ConsentChange], *, settle: bool = True
    ) -> None:
        """Append raw changes to consent.changes. With ``settle``, the next router start or
        input waits until the fold has folded them (as a live site's consent precedes its
        events); without, consent-state may lag (a slow fold)."""
        if settle:
            self._ensure_fold()
            self._unsettled = True
        self.consents.record(changes, wait=0)

    def settle(self) -> None:
        if self._unsettled:
            self.consents.settle()
            self._unsettled = False

    def browse(
        self, subject: str, n: int = 1, *, at: datetime | None = None, **fields: Any
    ) -> list[str]:
        self.settle()
        events = []
        for _ in range(n):
            datum = job_view(subject, at, **fields)
            events.append(datum)
        produce(
            self.bootstrap,
            self.plan.browsing_topic,
            ((subject.encode(), self.serde.encode(e, "BrowsingEvent")) for e in events),
        )
        ids = [str(e["event_id"]) for e in events]
        self.produced += ids
        return ids

    def score(self, subject: str, *, at: datetime | None = None, value: float = 0.7) -> str:
        self.settle()
        datum = {
            "event_id": uuid.uuid4(),
            "subject_id": subject,
            "event_time": at or datetime.now(UTC),
            "score_type": "offer_decline_probability",
            "score": value,
            "model_version": "m-1",
        }
        produce(
            self.bootstrap,
            self.plan.scores_topic,
            [(subject.encode(), self.serde.encode(datum, "DerivedScore"))],
        )
        self.produced.append(str(datum["event_id"]))
        return str(datum["event_id"])

    def raw(self, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        self.settle()
        produce(self.bootstrap, topic, records)

    # -- output ---------------------------------------------------------------------------
    def read(self, topic: str, expected: int | None = None, timeout: float = 30.0) -> list[Message]:
        return consume_all(self.bootstrap, topic, expected=expected, timeout=timeout)

    def decisions_by_event(self, expected: int, timeout: float = 60.0) -> dict[str, dict[str, str]]:
        """event id -> {sink: reason}, waiting for ``expected`` distinct events."""
        deadline = time.monotonic() + timeout
        out: dict[str, dict[str, str]] = {}
        while time.monotonic() < deadline and self._written(self.decisions) < expected:
            time.sleep(0.5)  # cheap: watermarks only, no reading
        while time.monotonic() < deadline:
            for msg in self.read(self.decisions, timeout=10):
                value = self.serde.decode(msg.value()).value
                out[str(value["event_id"])] = {o["sink"]: o["reason"] for o in value["outcomes"]}
            if len(out) >= expected:
                return out
            time.sleep(0.5)
        raise AssertionError(
            f"{len(out)} of {expected} decisions; router log:\n"
            + "\n".join(r.tail(40) for r in self.routers)
        )

    def _written(self, topic: str) -> int:
        """Records in ``topic`` now (sum of end offsets)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "cg-watermarks"})
        try:
            meta = consumer.list_topics(topic, timeout=10)
            return sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] or 0
                for p in meta.topics[topic].partitions
            )
        finally:
            consumer.close()

    def recipient_of(self, topic: str) -> str | None:
        """The partner a sink topic of this env delivers to (None: a first-party sink)."""
        for p in self.plan.partners:
            if topic == self.plan.partner_topic(p):
                return p
        for p in self.plan.score_partners:
            if topic == self.plan.partner_topic(p, "scores"):
                return p
        return None

    def sink_event_ids(self, topic: str, timeout: float = 10.0) -> list[str]:
        """The event ids of the records ``topic`` holds, as raw event ids. A partner record
        carries its recipient-scoped id: mapped back through the ids this env produced (an id
        that maps to none stays as written, so a comparison with raw ids fails on it)."""
        recipient = self.recipient_of(topic)
        back = (
            {str(self.keys.scoped_event_id(recipient, e)): e for e in self.produced}
            if recipient is not None
            else {}
        )
        ids = []
        for msg in self.read(topic, timeout=timeout):
            if msg.value() is not None:
                written = str(self.serde.decode(msg.value()).value["evidence"]["event_id"])
                ids.append(back.get(written, written))
        return ids

    def retractions(self, topic: str) -> list[tuple[bytes, dict[str, bytes]]]:
        return [
            (m.key(), dict(m.headers() or []))
            for m in self.read(topic, timeout=10)
            if m.value() is None
        ]

    def dump(self) -> str:
        return json.dumps({"topics": self.all_topics()})
