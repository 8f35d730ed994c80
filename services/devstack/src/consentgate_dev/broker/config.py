"""Files of the local single-node KRaft broker: server.properties and log4j2 config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["SASL_MECHANISM", "SUPER_USERS", "TlsListener", "log4j2_properties", "server_properties"]


SASL_MECHANISM = "SCRAM-SHA-512"
SUPER_USERS = ("User:ANONYMOUS", "User:admin")


@dataclass(frozen=True)
class TlsListener:
    """A SASL_SSL listener: its port, and the broker's PEM key store (an encrypted PKCS#8
    private key followed by its certificate chain) with the key's password."""

    port: int
    keystore: Path
    key_password: str


def server_properties(
    data_dir: Path,
    port: int,
    controller_port: int,
    sasl_port: int | None = None,
    tls: TlsListener | None = None,
) -> str:
    """A combined broker+controller, bound to 127.0.0.1 only, tuned for one small machine.

    With ``sasl_port`` it also listens for SASL/SCRAM-SHA-512 clients there (SASL_PLAINTEXT:
    TLS is the production overlay's) and authorizes every request with KRaft's
    StandardAuthorizer, denying what no ACL allows. The PLAINTEXT listener stays: the
    broker's own (inter-broker, controller) and the operator's path, whose principal
    User:ANONYMOUS is a super user, as is User:admin on the SASL listener; every other
    principal gets exactly what its ACLs allow. With ``tls`` the same SCRAM users and ACLs
    also hold on a SASL_SSL listener (the production setting, here with a test CA).
    """
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": (
            f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
        ),
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "6",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # compaction observable within a test run
        "log.cleaner.backoff.ms": "500",
        "log.cleaner.dedupe.buffer.size": "16777216",
        "auto.create.topics.enable": "false",
    }
    listeners = []
    if sasl_port is not None:
        listeners.append(("SASL", "SASL_PLAINTEXT", sasl_port))
    if tls is not None:
        listeners.append(("SECURE", "SASL_SSL", tls.port))
        props["listener.name.secure.ssl.keystore.type"] = "PEM"
        props["listener.name.secure.ssl.keystore.location"] = str(tls.keystore)
        props["listener.name.secure.ssl.key.password"] = tls.key_password
    for name, protocol, listen_port in listeners:
        props["listeners"] += f",{name}://127.0.0.1:{listen_port}"
        props["advertised.listeners"] += f",{name}://127.0.0.1:{listen_port}"
        props["listener.security.protocol.map"] += f",{name}:{protocol}"
        props[f"listener.name.{name.lower()}.sasl.enabled.mechanisms"] = SASL_MECHANISM
        props[f"listener.name.{name.lower()}.{SASL_MECHANISM.lower()}.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        )
    if listeners:
        props["sasl.enabled.mechanisms"] = SASL_MECHANISM
        props["authorizer.class.name"] = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        props["super.users"] = ";".join(SUPER_USERS)
        props["allow.everyone.if.no.acl.found"] = "false"
    return "".join(f"{k}={v}\n" for k, v in props.items())


def log4j2_properties(log_file: Path) -> str:
    return (
        "status = warn\n"
        "appender.file.type = RollingFile\n"
        "appender.file.name = file\n"
        f"appender.file.fileName = {log_file}\n"
        f"appender.file.filePattern = {log_file}.%i\n"
        "appender.file.layout.type = PatternLayout\n"
        "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
        "appender.file.policies.type = Policies\n"
        "appender.file.policies.size.type = SizeBasedTriggeringPolicy\n"
        "appender.file.policies.size.size = 50MB\n"
        "appender.file.strategy.type = DefaultRolloverStrategy\n"
        "appender.file.strategy.max = 3\n"
        "rootLogger.level = INFO\n"
        "rootLogger.appenderRef.file.ref = file\n"
        "logger.cleaner.name = kafka.log.LogCleaner\n"
        "logger.cleaner.level = INFO\n"
    )
