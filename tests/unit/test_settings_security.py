"""Client security settings: SASL and TLS reach every client as configured, and what cannot
be meant is refused before any client connects without it."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from consentgate.errors import ConfigError
from consentgate.settings import Settings

pytestmark = pytest.mark.unit

BOOT = "kafka-0.internal:9093"


def _settings(**fields: object) -> Settings:
    return Settings.model_validate({"bootstrap": BOOT, **fields})


@pytest.fixture(scope="module")
def client_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key (PEM), as a CA and a client would hold them."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "client.pem", folder / "client.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=consentgate-test", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_plaintext_has_no_security_keys() -> None:
    conf = _settings().kafka_config()
    assert conf["security.protocol"] == "PLAINTEXT"
    assert not [k for k in conf if k.startswith(("ssl.", "sasl."))]


def test_sasl_over_tls_reaches_librdkafka(client_pair: tuple[Path, Path]) -> None:
    cert, key = client_pair
    conf = _settings(
        security_protocol="sasl_ssl",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="consentgate-router",
        sasl_password=SecretStr("s3cret"),
        ssl_ca_location=cert,
        ssl_certificate_location=cert,
        ssl_key_location=key,
    ).kafka_config()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.password"] == "s3cret"
    assert conf["ssl.ca.location"] == str(cert)
    assert conf["ssl.certificate.location"] == str(cert)
    assert conf["ssl.key.location"] == str(key)
    assert conf["ssl.endpoint.identification.algorithm"] == "https"


def test_the_fold_gets_the_same_tls_as_a_python_context(client_pair: tuple[Path, Path]) -> None:
    cert, key = client_pair
    context = _settings(
        security_protocol="SSL",
        ssl_ca_location=cert,
        ssl_certificate_location=cert,
        ssl_key_location=key,
    ).ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any(c.get("subject") for c in context.get_ca_certs())  # our CA, loaded
    relaxed = _settings(security_protocol="SSL", ssl_endpoint_identification=False)
    context = relaxed.ssl_context()
    assert context is not None and not context.check_hostname
    assert relaxed.kafka_config()["ssl.endpoint.identification.algorithm"] == "none"
    assert _settings().ssl_context() is None


def test_the_settings_print_no_secret() -> None:
    settings = _settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_password=SecretStr("s3cret"),
        ssl_key_password=SecretStr("k3y"),
    )
    assert "s3cret" not in repr(settings) and "k3y" not in repr(settings)
    assert "s3cret" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"security_protocol": "TLS"}, "one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        ({"sasl_mechanism": "SCRAM-SHA-512"}, "protocol is PLAINTEXT"),
        ({"security_protocol": "SASL_SSL"}, "needs CONSENTGATE_SASL_MECHANISM"),
        ({"security_protocol": "SSL", "ssl_key_location": "/k.pem"}, "both"),
    ],
)
def test_what_cannot_be_meant_is_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(**fields).kafka_config()


def test_the_fold_s_aiokafka_credentials_carry_sasl_and_tls(client_pair: tuple[Path, Path]) -> None:
    """The consent fold's clients are aiokafka's (under faust), not librdkafka's: the same
    settings must give them SASL over TLS, or TLS alone."""
    from consentgate.consent.fold_config import FoldConfig, FoldTopics  # noqa: PLC0415
    from consentgate.consent.fold_run import _with_credentials  # noqa: PLC0415 - imports faust

    cert, _ = client_pair
    config = FoldConfig(BOOT, FoldTopics())
    both = _with_credentials(
        config,
        _settings(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="consentgate-consent",
            sasl_password=SecretStr("s3cret"),
            ssl_ca_location=cert,
        ),
    ).credentials
    assert str(both.protocol).endswith("SASL_SSL") and both.password == "s3cret"
    assert isinstance(both.ssl_context, ssl.SSLContext)
    tls = _with_credentials(config, _settings(security_protocol="SSL", ssl_ca_location=cert))
    assert type(tls.credentials).__name__ == "SSLCredentials"
    assert isinstance(tls.credentials.context, ssl.SSLContext)
    assert _with_credentials(config, _settings()).credentials is None
