"""Least privilege on a real broker: SASL/SCRAM principals, KRaft's StandardAuthorizer, and the
ACLs ``consentgate acls apply`` makes from deploy/topics.yaml.

A broker of its own (free ports, a temporary state folder) with a SASL/SCRAM-SHA-512 listener
and the authorizer on; every client here talks to that listener as a declared principal,
except the fixture's set-up (topics, SCRAM users) on the operator's PLAINTEXT listener. What
it shows: each consumer reads exactly what it is entitled to, a partner never another
partner's topic, apply is idempotent and prints its diff, takes away what the file does not
grant (a stray ACL, a recipient removed from the policy), and the router and the consent
service run end to end under SASL with nothing but their own ACLs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from consentgate.serde import Serde
from consentgate_dev.broker.local import LocalBroker
from consentgate_dev.jvm import free_port
from consentgate_dev.services import ServiceProcess
from consentgate_dev.settings import DevSettings
from tests.kafka_helpers import job_view

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOPICS_FILE = REPO / "deploy" / "topics.yaml"
POLICY_FILE = REPO / "deploy" / "policy.yaml"
USERS = (
    "admin",
    "consentgate-router",
    "consentgate-consent",
    "jobsite-events",
    "analytics",
    "consentgate-audit",
    "partner-kaede-trading",
    "partner-hoshino-electric",
    "intruder",  # has a password, no ACL
)
MASTER_KEY = "acl-test-master-key-not-a-secret"


def _password(user: str) -> str:
    return f"pw-{user}-{user[::-1]}"


@dataclass
class Secured:
    plain: str  # the operator's listener (User:ANONYMOUS, a super user)
    sasl: str
    workdir: Path
    tls: str = ""  # the SASL_SSL listener, its certificate from a test CA for 127.0.0.1
    ca: Path | None = None

    def conf(self, user: str) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.sasl,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": _password(user),
        }

    def env(self, user: str, *, tls: bool = False) -> dict[str, str]:
        """The product's settings for ``user`` on the SASL listener (``tls``: SASL_SSL)."""
        env = {
            "CONSENTGATE_BOOTSTRAP": self.sasl,
            "CONSENTGATE_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "CONSENTGATE_SASL_MECHANISM": "SCRAM-SHA-512",
            "CONSENTGATE_SASL_USERNAME": user,
            "CONSENTGATE_SASL_PASSWORD": _password(user),
            "CONSENTGATE_PSEUDONYM_MASTER_KEY": MASTER_KEY,
        }
        if tls:
            env["CONSENTGATE_BOOTSTRAP"] = self.tls
            env["CONSENTGATE_SECURITY_PROTOCOL"] = "SASL_SSL"
            env["CONSENTGATE_SSL_CA_LOCATION"] = str(self.ca)
        return env

    def cli(
        self, user: str, *args: str, timeout: float = 180, tls: bool = False
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env(user, tls=tls)}
        return subprocess.run(
            [sys.executable, "-m", "consentgate", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _test_ca(folder: Path, key_password: str) -> tuple[Path, Path]:
    """A test CA and, signed by it, the broker's PEM key store for 127.0.0.1 only (an
    encrypted PKCS#8 key, then its certificate): (CA certificate, key store)."""
    ca_key, ca = folder / "ca.key", folder / "ca.pem"
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-subj", "/CN=consentgate test CA", "-keyout", str(ca_key), "-out", str(ca)),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    key, csr, cert = folder / "broker.key", folder / "broker.csr", folder / "broker.pem"
    _openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"),
        *("-keyout", str(key), "-out", str(csr)),
    )
    ext = folder / "broker.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl(
        *("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key)),
        *("-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(ext)),
    )
    encrypted = folder / "broker.p8"
    _openssl(
        *("pkcs8", "-topk8", "-in", str(key), "-out", str(encrypted)),
        # PBE-SHA1-3DES: the Java 17 the broker runs on has no PBES2 key factory
        *("-v1", "PBE-SHA1-3DES", "-passout", f"pass:{key_password}"),
    )
    store = folder / "broker-keystore.pem"
    store.write_text(encrypted.read_text() + cert.read_text())
    return ca, store


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    state = tmp_path_factory.mktemp("secured-broker")
    key_password = "test-key-password"
    ca, store = _test_ca(tmp_path_factory.mktemp("tls"), key_password)
    settings = DevSettings(
        state_dir=state,
        broker_port=free_port(),
        broker_controller_port=free_port(),
        broker_sasl_port=free_port(),
        broker_tls_port=free_port(),
        broker_tls_keystore=store,
        broker_tls_key_password=SecretStr(key_password),
        broker_heap="384m",
    )
    broker = LocalBroker(settings)
    broker.start(timeout=180)
    try:
        assert broker.sasl_bootstrap is not None and broker.tls_bootstrap is not None
        env = Secured(broker.bootstrap, broker.sasl_bootstrap, state, broker.tls_bootstrap, ca)
        admin = AdminClient({"bootstrap.servers": env.plain})
        upserts = [
            UserScramCredentialUpsertion(
                user,
                ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                _password(user).encode(),
            )
            for user in USERS
        ]
        for future in admin.alter_user_scram_credentials(upserts).values():
            future.result(timeout=30)
        del admin  # no client of this broker outlives it
        topics = env.cli("admin", "topics", "apply", "--file", str(TOPICS_FILE))
        assert topics.returncode == 0, topics.stdout + topics.stderr
        yield env
    finally:
        broker.stop(timeout=30)


@pytest.fixture(scope="module")
def applied(secured: Secured) -> str:
    """ACLs applied once (as User:admin over SASL); the apply's output."""
    dry = secured.cli("admin", "acls", "apply", "--dry-run", "--file", str(TOPICS_FILE))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would add" in dry.stdout.splitlines()[-1]
    assert _acl_count(secured) == 0  # a dry run changes nothing
    done = secured.cli("admin", "acls", "apply", "--file", str(TOPICS_FILE))
    assert done.returncode == 0, done.stdout + done.stderr
    # the dry run announced exactly what the apply did
    assert [line for line in dry.stdout.splitlines() if line.startswith("+ ")] == [
        line for line in done.stdout.splitlines() if line.startswith("+ ")
    ]
    _produce_one_everywhere(secured)
    return done.stdout


def _acl_count(env: Secured) -> int:
    from consentgate.ops.acls import current_acls  # noqa: PLC0415 - the code under test

    return len(current_acls(AdminClient({"bootstrap.servers": env.plain})))


def _produce_one_everywhere(env: Secured) -> None:
    producer = Producer({"bootstrap.servers": env.plain})
    # a record where a read is expected to succeed (the router dead-letters the raw one);
    # a refused read needs none: the broker refuses the fetch itself
    for topic in (
        "events.browsing.raw.v1",
        "events.browsing.analytics.v1",
        "partner.kaede-trading.browsing.v1",
        "partner.hoshino-electric.browsing.v1",
    ):
        producer.produce(topic, key=b"probe", value=b"probe", partition=0)
    assert producer.flush(30) == 0


def _reads(env: Secured, user: str, topic: str, group: str) -> bool:
    """True when ``user``, subscribed in ``group``, reads a record of ``topic``; False when the
    broker refuses it (topic or group not authorized); anything else fails the test."""
    consumer = Consumer(
        {
            **env.conf(user),
            "group.id": f"{group}.{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    refused = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is None:
                return True
            if error.code() in refused:
                return False
            if error.code() == KafkaError.SASL_AUTHENTICATION_FAILED:
                raise AssertionError(f"{user} cannot log in: {error}")
        raise AssertionError(f"{user} on {topic}: neither a record nor a refusal in 60 s")
    finally:
        consumer.close()


def test_apply_is_idempotent_and_says_so(secured: Secured, applied: str) -> None:
    added = [line for line in applied.splitlines() if line.startswith("+ ")]
    assert "+ User:analytics READ topic events.browsing.analytics.v1" in added
    assert "+ User:partner-kaede-trading READ topic partner.kaede-trading.browsing.v1" in added
    again = secured.cli("admin", "acls", "apply", "--file", str(TOPICS_FILE))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"add 0, remove 0, unchanged {len(added)}"


def test_analytics_reads_its_sink_and_nothing_upstream_or_partner(
    secured: Secured, applied: str
) -> None:
    group = "analytics-acl-test"
    assert _reads(secured, "analytics", "events.browsing.analytics.v1", group)
    for topic in (
        "events.browsing.raw.v1",
        "consent.changes.v1",
        "consent.state.v1",
        "consentgate.decisions.v1",
        "partner.kaede-trading.browsing.v1",
    ):
        assert not _reads(secured, "analytics", topic, group), topic


def test_a_partner_reads_its_own_topic_never_another_partner_s(
    secured: Secured, applied: str
) -> None:
    """(A group of a partner's starts with ``partner-<recipient>.``, so one recipient's prefix
    never covers another's groups.)"""
    kaede, hoshino = "partner-kaede-trading", "partner-hoshino-electric"
    assert _reads(secured, kaede, "partner.kaede-trading.browsing.v1", kaede)
    assert not _reads(secured, kaede, "partner.hoshino-electric.browsing.v1", kaede)
    assert not _reads(secured, kaede, "events.browsing.analytics.v1", kaede)
    assert _reads(secured, hoshino, "partner.hoshino-electric.browsing.v1", hoshino)
    assert not _reads(secured, hoshino, "partner.kaede-trading.browsing.v1", hoshino)
    assert not _reads(secured, "intruder", "partner.kaede-trading.browsing.v1", "intruder")


def test_a_stray_acl_is_taken_away_and_others_principals_are_left_alone(
    secured: Secured, applied: str
) -> None:
    admin = AdminClient({"bootstrap.servers": secured.plain})
    stray = AclBinding(
        ResourceType.TOPIC,
        "events.browsing.raw.v1",
        ResourcePatternType.LITERAL,
        "User:analytics",
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    foreign = AclBinding(
        ResourceType.TOPIC,
        "events.browsing.raw.v1",
        ResourcePatternType.LITERAL,
        "User:intruder",
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    foreign_group = AclBinding(
        ResourceType.GROUP,
        "intruder",
        ResourcePatternType.PREFIXED,
        "User:intruder",
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    for future in admin.create_acls([stray, foreign, foreign_group]).values():
        future.result(timeout=30)
    assert _reads(secured, "analytics", "events.browsing.raw.v1", "analytics-stray")
    done = secured.cli("admin", "acls", "apply", "--file", str(TOPICS_FILE))
    assert done.returncode == 0, done.stderr
    assert "- User:analytics READ topic events.browsing.raw.v1" in done.stdout.splitlines()
    assert "intruder" not in done.stdout  # not governed by the file: untouched
    assert not _reads(secured, "analytics", "events.browsing.raw.v1", "analytics-stray")
    assert _reads(secured, "intruder", "events.browsing.raw.v1", "intruder")
    filters = [
        AclBindingFilter(
            b.restype,
            b.name,
            b.resource_pattern_type,
            b.principal,
            b.host,
            b.operation,
            b.permission_type,
        )
        for b in (foreign, foreign_group)
    ]
    for future in admin.delete_acls(filters).values():
        future.result(timeout=30)


def test_a_recipient_removed_from_the_policy_loses_its_access(
    secured: Secured, applied: str, tmp_path: Path
) -> None:
    policy = yaml.safe_load(POLICY_FILE.read_text())
    policy["sinks"] = [s for s in policy["sinks"] if s.get("recipient") != "hoshino-electric"]
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    topics = yaml.safe_load(TOPICS_FILE.read_text())
    for name in [t for t in topics["topics"] if "hoshino-electric" in t]:
        del topics["topics"][name]
    (tmp_path / "topics.yaml").write_text(yaml.safe_dump(topics, sort_keys=False))
    hoshino = "partner-hoshino-electric"
    try:
        done = secured.cli("admin", "acls", "apply", "--file", str(tmp_path / "topics.yaml"))
        assert done.returncode == 0, done.stdout + done.stderr
        removed = [line for line in done.stdout.splitlines() if line.startswith("- ")]
        # the partner's own ACLs go; so does the router's write and the auditor's read of its
        # (no longer a sink) topics; nothing else changes
        assert any(line.startswith(f"- User:{hoshino} ") for line in removed), removed
        assert all("hoshino-electric" in line for line in removed), removed
        assert not _reads(secured, hoshino, "partner.hoshino-electric.browsing.v1", hoshino)
    finally:
        back = secured.cli("admin", "acls", "apply", "--file", str(TOPICS_FILE))
        assert back.returncode == 0, back.stderr
    assert _reads(secured, hoshino, "partner.hoshino-electric.browsing.v1", hoshino)


def test_router_and_consent_service_run_end_to_end_on_their_own_acls(
    secured: Secured, applied: str
) -> None:
    work = secured.workdir / f"e2e-{uuid.uuid4().hex[:6]}"
    work.mkdir()
    policy = work / "policy.yaml"
    shutil.copy(POLICY_FILE, policy)
    fold_port, router_port = free_port(), free_port()
    fold = ServiceProcess(
        ["consent", "fold", "--policy", str(policy), "--web-port", str(fold_port)],
        secured.env("consentgate-consent"),
        work / "fold.log",
        fold_port,
    )
    fold.name = "consent fold"
    router = ServiceProcess(
        [
            *("router", "--policy", str(policy), "--web-port", str(router_port)),
            *("--instance-id", "acl-e2e", "--consent-wait", "5"),
        ],
        secured.env("consentgate-router"),
        work / "router.log",
        router_port,
    )
    router.name = "router"
    try:
        fold.wait_ready(timeout=180)
        router.wait_ready(timeout=180)
        subject = f"sasl-{uuid.uuid4().hex[:6]}"
        grant = secured.cli(
            "consentgate-consent",
            *("consent", "grant", subject, "analytics", "--wait", "60"),
            *("--policy", str(policy)),
        )
        assert grant.returncode == 0, grant.stdout + grant.stderr
        serde = Serde()
        event_id = uuid.uuid4()
        datum = job_view(subject, event_id=event_id, company_id="kaede-trading")
        producer = Producer(
            {**secured.conf("jobsite-events"), "partitioner": "murmur2_random", "acks": "all"}
        )
        producer.produce(
            "events.browsing.raw.v1",
            key=subject.encode(),
            value=serde.encode(datum, "BrowsingEvent"),
        )
        assert producer.flush(30) == 0
        assert str(event_id) in _sink_event_ids(secured, "analytics", event_id), router.tail()
        assert router.running() and fold.running()
    finally:
        router.stop()
        fold.stop()
    denied = [
        line
        for log in (work / "router.log", work / "fold.log")
        for line in log.read_text(errors="replace").splitlines()
        if "AUTHORIZATION_FAILED" in line or "not authorized" in line.lower()
    ]
    assert denied == [], "\n".join(denied[:10])


def _sink_event_ids(env: Secured, user: str, wanted: uuid.UUID) -> set[str]:
    """Event ids ``user`` reads from the analytics sink (read_committed) until ``wanted``
    shows up or 90 s pass."""
    serde = Serde()
    consumer = Consumer(
        {
            **env.conf(user),
            "group.id": f"analytics-e2e-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(["events.browsing.analytics.v1"])
    seen: set[str] = set()
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and str(wanted) not in seen:
            msg = consumer.poll(0.5)
            if msg is None or msg.value() in (None, b"probe"):
                continue
            assert msg.error() is None, msg.error()
            seen.add(str(serde.decode(msg.value()).value["evidence"]["event_id"]))
    finally:
        consumer.close()
    return seen


def test_the_consent_service_runs_over_tls_and_checks_the_broker_s_name(
    secured: Secured, applied: str
) -> None:
    """SASL_SSL with the CA from the settings: the fold (aiokafka, an SSL context), the
    consent CLI's writes and reads (librdkafka) work; a name the certificate does not hold
    (localhost, where it names 127.0.0.1 only) is refused."""
    work = secured.workdir / f"tls-{uuid.uuid4().hex[:6]}"
    work.mkdir()
    port = free_port()
    fold = ServiceProcess(
        [
            *("consent", "fold", "--policy", str(POLICY_FILE), "--web-port", str(port)),
            *("--group", "consentgate-fold-tls"),
        ],
        secured.env("consentgate-consent", tls=True),
        work / "fold.log",
        port,
    )
    fold.name = "consent fold (TLS)"
    subject = f"tls-{uuid.uuid4().hex[:6]}"
    try:
        fold.wait_ready(timeout=180)
        grant = secured.cli(
            "consentgate-consent",
            *("consent", "grant", subject, "analytics", "--wait", "60"),
            *("--policy", str(POLICY_FILE)),
            tls=True,
        )
        assert grant.returncode == 0, grant.stdout + grant.stderr + fold.tail()
    finally:
        fold.stop()
    shown = secured.cli("consentgate-audit", "consent", "show", subject, "--json", tls=True)
    assert shown.returncode == 0, shown.stderr
    assert "analytics" in shown.stdout
    from consentgate.settings import Settings  # noqa: PLC0415 - the settings under test

    settings = Settings.model_validate(
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "consentgate-audit",
            "sasl_password": _password("consentgate-audit"),
            "ssl_ca_location": secured.ca,
        }
    )
    wrong_name = secured.tls.replace("127.0.0.1", "localhost")
    admin = AdminClient({**settings.kafka_config(wrong_name), "log_level": 0})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=10)
    # the same address with the name check off connects: the refusal above was the check
    unchecked = settings.model_copy(update={"ssl_endpoint_identification": False})
    admin = AdminClient({**unchecked.kafka_config(wrong_name), "log_level": 0})
    assert "consent.state.v1" in admin.list_topics(timeout=30).topics
