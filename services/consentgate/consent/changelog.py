"""The consent service's only write: append a change to ``consent.changes`` and learn where
it landed.

One idempotent producer (acks=all, murmur2 by subject id, so the change lands on its
subject's partition), shared by every thread and request of the process; a daemon thread
serves its delivery reports. ``submit`` returns a future that resolves to the change's
:class:`Receipt` (partition and offset) once the broker has it on every in-sync replica,
or to :class:`AppendError`. Nothing else is written: ``consent.state`` is the fold's.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from consentgate.errors import ConsentgateError
from consentgate.models.consent import ConsentChange
from consentgate.serde import Serde

__all__ = ["AppendError", "ChangeLog", "Receipt"]


class AppendError(ConsentgateError):
    """The change is not known to be in the log (the caller may retry with its change id)."""


@dataclass(frozen=True, slots=True)
class Receipt:
    change_id: str
    subject_id: str
    partition: int
    offset: int


class ChangeLog:
    """Appends changes to the consent-changes topic."""

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        topic: str,
        serde: Serde,
        *,
        linger_ms: int = 2,
    ) -> None:
        self.topic = topic
        self.serde = serde
        self._producer = Producer(
            {
                **kafka_config,
                "partitioner": "murmur2_random",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": linger_ms,
                "delivery.timeout.ms": 30_000,
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="changelog-acks", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def submit(self, change: ConsentChange) -> Future[Receipt]:
        """Start appending ``change``; the future resolves when the broker acknowledges."""
        future: Future[Receipt] = Future()
        value = self.serde.encode(change)

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                future.set_exception(AppendError(f"consent change {change.change_id}: {err}"))
            else:
                future.set_result(
                    Receipt(change.change_id, change.subject_id, msg.partition(), msg.offset())  # type: ignore[arg-type]
                )

        while True:
            try:
                self._producer.produce(
                    self.topic, key=change.subject_id.encode(), value=value, on_delivery=on_delivery
                )
                return future
            except BufferError:
                self._producer.poll(0.05)

    def append(self, changes: Sequence[ConsentChange], timeout: float = 35.0) -> list[Receipt]:
        """Append ``changes`` and wait for every acknowledgement (AppendError on any failure)."""
        futures = [self.submit(c) for c in changes]
        return [f.result(timeout) for f in futures]

    def close(self, timeout: float = 30.0) -> None:
        self._producer.flush(timeout)
        self._stop.set()
        self._thread.join(timeout=2)
