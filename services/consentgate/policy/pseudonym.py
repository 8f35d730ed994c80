"""Per-recipient pseudonyms: HMAC-SHA256(recipient key, subject id), hex.

Each recipient (and the first party, under the key name ``_first_party``) has its own key, so
the same subject gets a stable pseudonym within a recipient's sinks and unrelated ones across
recipients: two partners cannot join their data on the id, and without the key a partner
cannot test a guessed id (unlike a plain hash, which the PPC rejected in the Rikunabi case).

Keys come from the environment through pydantic-settings, as secrets:

- ``CONSENTGATE_PSEUDONYM_KEYS``: JSON object ``{"acme-corp": "...", "_first_party": "..."}``;
- ``CONSENTGATE_PSEUDONYM_MASTER_KEY``: one master secret; the key of a recipient without an
  explicit entry is derived from it with HKDF-SHA256 (RFC 5869; salt
  ``consentgate-pseudonym-v1``, info ``recipient:<id>``). Rotating the master key changes
  every derived pseudonym, so rotate per recipient with explicit keys instead.
Explicit keys win over derived ones. A key shorter than 16 bytes (or missing) is refused:
pseudonymizing under an empty or guessable key would be a plain hash in disguise.

The same keys scope event ids (:func:`scoped_event_id`): a partner record names its event by
an id only that recipient's records carry, so two recipients holding the same event cannot
join on the event id either. The audit recomputes it from this definition, which is fixed:
the first 16 bytes of HMAC-SHA256(key, ``b"event:"`` + the event id as text, UTF-8), as a
UUID of version 8 with the RFC 4122 variant (set by hand: Python 3.11's uuid has no v8).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable, Mapping

import pydantic
from pydantic_settings import BaseSettings, SettingsConfigDict

from consentgate.errors import ConfigError

__all__ = [
    "MIN_KEY_BYTES",
    "PseudonymKeys",
    "PseudonymSettings",
    "hkdf_sha256",
    "scoped_event_id",
]

MIN_KEY_BYTES = 16
_SALT = b"consentgate-pseudonym-v1"
_EVENT = b"event:"


class PseudonymSettings(BaseSettings):
    """The pseudonym secrets, from ``CONSENTGATE_PSEUDONYM_KEYS`` / ``..._MASTER_KEY``."""

    model_config = SettingsConfigDict(env_prefix="CONSENTGATE_", extra="ignore")

    pseudonym_keys: dict[str, pydantic.SecretStr] = pydantic.Field(default_factory=dict)
    pseudonym_master_key: pydantic.SecretStr | None = None


def hkdf_sha256(secret: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF with SHA-256 (RFC 5869): extract, then expand to ``length`` bytes."""
    prk = hmac.new(salt, secret, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def scoped_event_id(key: bytes, event_id: str | uuid.UUID) -> uuid.UUID:
    """``event_id`` as the holder of ``key`` sees it (see the module docstring): a UUIDv8 of
    the first 16 bytes of HMAC-SHA256(key, b"event:" + str(event_id) as UTF-8)."""
    digest = bytearray(hmac.digest(key, _EVENT + str(event_id).encode(), "sha256")[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8 (the high nibble of byte 6)
    digest[8] = (digest[8] & 0x3F) | 0x80  # variant RFC 4122 (the two high bits of byte 8: 10)
    return uuid.UUID(bytes=bytes(digest))


class PseudonymKeys:
    """Recipient id (or ``_first_party``) -> HMAC key; computes pseudonyms."""

    def __init__(
        self,
        keys: Mapping[str, pydantic.SecretStr] | None = None,
        *,
        master_key: pydantic.SecretStr | None = None,
    ) -> None:
        self._explicit = dict(keys or {})
        self._master = master_key
        self._cache: dict[str, bytes] = {}

    @classmethod
    def from_settings(cls, settings: PseudonymSettings | None = None) -> PseudonymKeys:
        """Keys from ``settings`` (default: read from the environment now)."""
        settings = settings if settings is not None else PseudonymSettings()
        return cls(settings.pseudonym_keys, master_key=settings.pseudonym_master_key)

    def key_for(self, key_name: str) -> bytes:
        """The HMAC key of a recipient id or ``_first_party``; ConfigError if none is usable."""
        cached = self._cache.get(key_name)
        if cached is not None:
            return cached
        explicit = self._explicit.get(key_name)
        if explicit is not None:
            key = explicit.get_secret_value().encode("utf-8")
            source = f"CONSENTGATE_PSEUDONYM_KEYS[{key_name!r}]"
        elif self._master is not None:
            master = self._master.get_secret_value().encode("utf-8")
            _require_length(master, "CONSENTGATE_PSEUDONYM_MASTER_KEY")
            key = hkdf_sha256(master, salt=_SALT, info=b"recipient:" + key_name.encode("utf-8"))
            source = "the master key"
        else:
            raise ConfigError(
                f"no pseudonym key for {key_name!r}: set CONSENTGATE_PSEUDONYM_KEYS "
                "or CONSENTGATE_PSEUDONYM_MASTER_KEY"
            )
        _require_length(key, source)
        self._cache[key_name] = key
        return key

    def pseudonym(self, key_name: str, subject_id: str) -> str:
        """HMAC-SHA256(key of ``key_name``, subject id as UTF-8), lowercase hex."""
        key = self._cache.get(key_name) or self.key_for(key_name)
        return hmac.digest(key, subject_id.encode("utf-8"), "sha256").hex()

    def scoped_event_id(self, key_name: str, event_id: str | uuid.UUID) -> uuid.UUID:
        """The id of event ``event_id`` in the records of ``key_name`` (a recipient id):
        :func:`scoped_event_id` under that recipient's key."""
        key = self._cache.get(key_name) or self.key_for(key_name)
        return scoped_event_id(key, event_id)

    def check(self, key_names: Iterable[str]) -> None:
        """Fail fast (ConfigError naming every problem) unless every key is usable."""
        problems = []
        for name in sorted(set(key_names)):
            try:
                self.key_for(name)
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("; ".join(problems))

    def __repr__(self) -> str:  # never show secrets
        has_master = self._master is not None
        return f"PseudonymKeys(explicit={sorted(self._explicit)}, master={has_master})"


def _require_length(key: bytes, source: str) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"pseudonym key from {source} is {len(key)} bytes; at least {MIN_KEY_BYTES} needed"
        )
