"""The console's settings (``CONSENTGATE_CONSOLE_*``), read with the consent service's.

The operators' console is on only when a user, a password (or its hash) and a session key
are set; the subjects' preference page only when a link key is set. Secrets are SecretStr:
never logged, never in a repr.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MIN_KEY_LENGTH", "ConsoleSettings"]

MIN_KEY_LENGTH = 32
"""Characters a session or link key needs at least (a key is an HMAC-SHA256 secret)."""


class ConsoleSettings(BaseSettings):
    """Every knob of ``/console``, each overridable as ``CONSENTGATE_CONSOLE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CONSENTGATE_CONSOLE_", extra="ignore")

    user: str | None = Field(default=None, description="the operators' login name")
    password: SecretStr | None = Field(
        default=None, description="the operators' password (prefer password_hash)"
    )
    password_hash: SecretStr | None = Field(
        default=None,
        description="scrypt hash of the password (consentgate consent console-password)",
    )
    session_key: SecretStr | None = Field(
        default=None, description="HMAC key of operator sessions and CSRF tokens (32+ chars)"
    )
    link_key: SecretStr | None = Field(
        default=None, description="HMAC key of subjects' preference links (32+ chars)"
    )
    base_url: str = Field(
        default="http://127.0.0.1:8070", description="the public address links point to"
    )
    link_ttl: float = Field(
        default=7 * 86400.0, gt=0, description="seconds a preference link is valid (default)"
    )
    session_ttl: float = Field(
        default=8 * 3600.0, gt=0, description="seconds an operator session lasts"
    )
    subject_session_ttl: float = Field(
        default=3600.0, gt=0, description="seconds a subject's session lasts (at most the link's)"
    )
    secure_cookies: bool = Field(
        default=True, description="Secure cookies (off only for plain-HTTP development)"
    )
    cache_seconds: float = Field(
        default=15.0, ge=0, description="seconds a report read from Kafka is reused by pages"
    )
    page_size: int = Field(default=50, gt=0, le=1000, description="rows per page")
    fold_group: str = Field(
        default="consentgate-fold", description="the fold's group: consent-state lag"
    )
    audit_json: Path | None = Field(
        default=None, description="`consentgate audit --json` output: the last verdict"
    )
    audit_html: Path | None = Field(
        default=None, description="`consentgate audit --html` output, linked from the overview"
    )
    replay_reports: Path | None = Field(
        default=None, description="a folder of `consentgate replay --json` outputs (*.json)"
    )

    @property
    def operators_enabled(self) -> bool:
        return bool(self.user and (self.password or self.password_hash) and self.session_key)

    @property
    def subjects_enabled(self) -> bool:
        return self.link_key is not None and self.session_key is not None
