"""The local broker's setup errors say what is wrong and what to do (no broker started)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from consentgate_dev import jvm
from consentgate_dev.broker.local import LocalBroker
from consentgate_dev.errors import BrokerSetupError
from consentgate_dev.settings import DevSettings

pytestmark = pytest.mark.unit


def fake_java(tmp_path: Path, version: str) -> Path:
    java = tmp_path / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2024-01-01' >&2\n")
    java.chmod(0o755)
    return java


def test_too_old_java_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BrokerSetupError, match=r"Java 11.*needs Java 17\+.*openjdk-17"):
        jvm.require_java(fake_java(tmp_path, "11.0.2"))


def test_java_8_version_scheme_is_understood(tmp_path: Path) -> None:
    with pytest.raises(BrokerSetupError, match="Java 8"):
        jvm.require_java(fake_java(tmp_path, "1.8.0_392"))


def test_java_17_passes(tmp_path: Path) -> None:
    assert jvm.require_java(fake_java(tmp_path, "17.0.15")) == 17


def test_no_java_and_no_maven(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("CONSENTGATE_JAVA_HOME", raising=False)
    monkeypatch.setattr(jvm, "JVM_DIRS", (tmp_path / "jvm",))
    with pytest.raises(BrokerSetupError, match=r"no Java found.*CONSENTGATE_BOOTSTRAP"):
        jvm.find_java()
    with pytest.raises(BrokerSetupError, match=r"no Maven found.*apt-get install maven"):
        jvm.find_maven()


def test_port_taken_is_detected() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert jvm.port_in_use(sock.getsockname()[1])


def test_corrupt_state_folder_is_reported(tmp_path: Path) -> None:
    broker = LocalBroker(DevSettings(state_dir=tmp_path))
    broker.data.mkdir(parents=True)
    (broker.data / "stray.log").write_text("x")
    with pytest.raises(BrokerSetupError, match=r"corrupt state folder.*remove"):
        broker._format_once(Path("/nonexistent/java"), tmp_path)
    (broker.data / "meta.properties").write_text("garbage")
    with pytest.raises(BrokerSetupError, match=r"meta\.properties is unreadable"):
        broker._format_once(Path("/nonexistent/java"), tmp_path)


def test_only_old_javas_are_named_with_their_versions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The broker and the registry look for Java the same way: an explicit home first, the
    environment, PATH, then /usr/lib/jvm; what they found and refused is in the message."""
    old = fake_java(tmp_path / "old", "11.0.2")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CONSENTGATE_JAVA_HOME", str(old.parent.parent))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(jvm, "JVM_DIRS", (tmp_path / "jvm",))
    with pytest.raises(BrokerSetupError, match=r"needs Java 21\+.*\(Java 11\).*install a JDK 21"):
        jvm.find_java(21, what="the registry")
    new = fake_java(tmp_path / "jvm" / "temurin-25", "25.0.1")
    assert jvm.find_java(21) == new
