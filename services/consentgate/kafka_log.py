"""librdkafka's own log, routed through Python logging (one log format for operators).

librdkafka logs some conditions it resolves itself at warning level: right after a broker
starts, every idempotent producer logs "Failed to acquire idempotence PID ... Coordinator
load in progress: retrying" and then succeeds. Those lines are lowered to DEBUG here, so a
new user's first ``make demo`` shows no warning that is not one; anything else librdkafka
says keeps its level, and a condition that does not resolve ends in a client error anyway.
"""

from __future__ import annotations

import logging

__all__ = ["librdkafka_logger"]

_TRANSIENT = ("Coordinator load in progress: retrying",)


class _LowerTransient(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG and any(t in record.getMessage() for t in _TRANSIENT):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_LOGGER = logging.getLogger("librdkafka")
_LOGGER.addFilter(_LowerTransient())


def librdkafka_logger() -> logging.Logger:
    """The logger every client's ``logger`` setting names."""
    return _LOGGER
