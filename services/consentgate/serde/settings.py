"""Serde settings from the environment (``CONSENTGATE_`` prefix).

==============================================  ==========================================
``CONSENTGATE_SCHEMA_REGISTRY_URL``             registry URL; unset: embedded single-object
                                                encoding; ``mock://<name>`` in unit tests
``CONSENTGATE_SCHEMA_REGISTRY_BASIC_AUTH``      ``user:password`` for the registry (secret)
``CONSENTGATE_SCHEMA_REGISTRY_AUTO_REGISTER``   register schemas on first encode (default on)
``CONSENTGATE_SCHEMAS_DIR``                     schemas directory (default: the repo's)
==============================================  ==========================================

:func:`registry_client_conf` also accepts any other settings object with a
``schema_registry_url`` attribute (e.g. ``consentgate.settings.Settings``); attributes it
lacks take the defaults above.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pydantic
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RegistrySettings", "SerdeSettings", "registry_client_conf"]


class RegistrySettings(Protocol):
    """What a settings object needs for :meth:`consentgate.serde.Serde.from_settings`."""

    @property
    def schema_registry_url(self) -> str | None: ...


class SerdeSettings(BaseSettings):
    """Where schemas come from and whether a schema registry is used."""

    model_config = SettingsConfigDict(env_prefix="CONSENTGATE_", extra="ignore")

    schema_registry_url: str | None = None
    schema_registry_basic_auth: pydantic.SecretStr | None = None
    schema_registry_auto_register: bool = True
    schemas_dir: Path | None = None


def registry_client_conf(settings: RegistrySettings) -> dict[str, str] | None:
    """The SchemaRegistryClient configuration, or None without a registry."""
    if not settings.schema_registry_url:
        return None
    conf = {"url": settings.schema_registry_url}
    auth = getattr(settings, "schema_registry_basic_auth", None)
    if isinstance(auth, pydantic.SecretStr):
        conf["basic.auth.user.info"] = auth.get_secret_value()
    return conf
