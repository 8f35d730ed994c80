"""The product finds its Kafka cluster in its settings, and nowhere else.

``CONSENTGATE_BOOTSTRAP`` (with the SASL/TLS settings beside it) names the cluster. Nothing
here starts a broker or looks for one: the local development broker belongs to the
development package (``consentgate_dev``), which exports the same variable for what it runs.
"""

from __future__ import annotations

from consentgate.errors import ClusterError
from consentgate.settings import Settings

__all__ = ["resolve_bootstrap"]


def resolve_bootstrap(settings: Settings | None = None) -> str:
    """The configured bootstrap servers, or a ClusterError saying how to configure them."""
    settings = settings or Settings()
    if settings.bootstrap:
        return settings.bootstrap
    raise ClusterError(
        "no Kafka cluster configured: set CONSENTGATE_BOOTSTRAP=host:port (for the local "
        "development broker: `consentgate broker start` prints the value to export)"
    )
