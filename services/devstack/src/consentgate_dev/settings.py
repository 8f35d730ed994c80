"""Settings of the development stack: the product's settings plus where the local broker runs.

``CONSENTGATE_STATE_DIR``, ``CONSENTGATE_BROKER_PORT``, ``CONSENTGATE_BROKER_CONTROLLER_PORT``,
``CONSENTGATE_BROKER_SASL_PORT``, ``CONSENTGATE_BROKER_HEAP`` and ``CONSENTGATE_JAVA_HOME``
mean something here only; the product ignores them (it finds its cluster in
``CONSENTGATE_BOOTSTRAP``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from consentgate.settings import Settings

__all__ = ["DevSettings", "default_state_dir"]


def default_state_dir() -> Path:
    """``.state/`` of the checkout the package runs from, else the user's cache."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (parent / "services" / "devstack").is_dir():
            return parent / ".state"
    return Path.home() / ".cache" / "consentgate" / "state"


class DevSettings(Settings):
    """The product's settings and the local broker's."""

    state_dir: Path = Field(default_factory=default_state_dir)
    broker_port: int = 19192
    broker_controller_port: int = 19193
    broker_sasl_port: int | None = None  # a SASL/SCRAM listener and the authorizer too
    broker_tls_port: int | None = None  # a SASL_SSL listener too (needs the key store)
    broker_tls_keystore: Path | None = None  # PEM: encrypted PKCS#8 key + certificate chain
    broker_tls_key_password: SecretStr | None = None
    broker_heap: str = "512m"
    java_home: Path | None = None
