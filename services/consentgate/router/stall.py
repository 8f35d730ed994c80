"""A blocking Kafka call that never returns stops the router (exit 70) instead of hanging it.

librdkafka does not always keep the timeout it is given: ``send_offsets_to_transaction``
waits forever while the group coordinator is unreachable (librdkafka#5456, open). When a
broker stopped for good (its disk full: Kafka halts a broker whose last log dir fails), the
router sat in that call, silent, for as long as the broker was gone. A guarded call that
outlives its deadline now ends the process from this watchdog thread: the error is logged
as every fail-stop is, and the process exits 70 at once (the main thread is inside
librdkafka and cannot be unwound). Nothing is lost by it: the hung call committed nothing,
the open transaction is aborted by its coordinator's timeout or fenced by the next worker
with the same ``transactional.id``, and read_committed consumers never see its records.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["StallGuard"]

log = logging.getLogger(__name__)


class StallGuard:
    """Watches one blocking call at a time; ``on_stall`` (default: log and exit 70) runs
    when a call has taken longer than ``limit`` seconds."""

    def __init__(
        self,
        limit: float,
        *,
        exit_code: int = 70,
        on_stall: Callable[[str, float], None] | None = None,
        tick: float = 1.0,
    ) -> None:
        self.limit = limit
        self._exit_code = exit_code
        self._on_stall = on_stall or self._stop_process
        self._tick = tick
        self._call: tuple[str, float] | None = None  # (name, started), set by the caller
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def call(self, name: str) -> Iterator[None]:
        self._call = (name, time.monotonic())
        try:
            yield
        finally:
            self._call = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="stall-guard", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self._tick):
            current = self._call
            if current is None:
                continue
            name, started = current
            took = time.monotonic() - started
            if took > self.limit:
                self._on_stall(name, took)
                return

    def _stop_process(self, name: str, took: float) -> None:
        log.error(
            "router stops without committing (exit %d): transactional producer: %s has not "
            "returned in %.0f s (limit %.0f s); is the broker reachable?",
            self._exit_code,
            name,
            took,
            self.limit,
        )
        logging.shutdown()
        os._exit(self._exit_code)
