"""Errors of the development stack, under the product's root so the CLI reports them alike.

ConsentgateError
├── BrokerError                 the local broker or registry cannot be started or reached
│   └── BrokerSetupError        a prerequisite is missing (Java, Maven, repository, port)
└── DemoFailed                  the demo saw what a healthy run must not show
"""

from __future__ import annotations

from consentgate.errors import ConsentgateError

__all__ = ["BrokerError", "BrokerSetupError", "DemoFailed"]


class BrokerError(ConsentgateError):
    """The local broker (or registry) failed to start, stop or answer."""


class BrokerSetupError(BrokerError):
    """A prerequisite of the local broker is missing; the message says how to fix it."""


class DemoFailed(ConsentgateError):
    """The demo's run showed a defect (e.g. events denied as stale on a healthy cluster)."""
