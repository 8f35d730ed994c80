"""Prerequisites of the local broker: a Java >= 17 and, for the first download, Maven.

Every failure raises :class:`BrokerSetupError` with what to do about it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

from consentgate.errors import BrokerSetupError

__all__ = ["MIN_JAVA", "find_java", "find_maven", "java_major", "port_in_use"]

MIN_JAVA = 17
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def find_java(java_home: Path | None = None) -> Path:
    """The ``java`` executable: ``java_home`` or $JAVA_HOME first, then PATH."""
    for home in (java_home, os.environ.get("JAVA_HOME")):
        if home:
            candidate = Path(home) / "bin" / "java"
            if candidate.exists():
                return candidate
    found = shutil.which("java")
    if not found:
        raise BrokerSetupError(
            f"no Java found: the local Kafka broker needs Java {MIN_JAVA}+ "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless), or set "
            "CONSENTGATE_JAVA_HOME, or point CONSENTGATE_BOOTSTRAP at an existing cluster"
        )
    return Path(found)


def java_major(java: Path) -> int:
    """The major version of a ``java`` executable (8 for 1.8)."""
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise BrokerSetupError(f"cannot run {java}: {exc}") from exc
    match = _VERSION.search(out.stderr + out.stdout)
    if not match:
        raise BrokerSetupError(f"cannot tell the version of {java}: {out.stderr.strip()!r}")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise BrokerSetupError(
            f"{java} is Java {major}; the local Kafka broker needs Java {MIN_JAVA}+ "
            "(apt-get install openjdk-17-jre-headless, then set CONSENTGATE_JAVA_HOME)"
        )
    return major


def find_maven() -> Path:
    """The ``mvn`` executable, needed once to fetch Kafka's jars from Maven Central."""
    found = shutil.which("mvn")
    if not found:
        raise BrokerSetupError(
            "no Maven found: the first start of the local broker downloads Apache Kafka's "
            "jars with Maven (Debian/Ubuntu: apt-get install maven)"
        )
    return Path(found)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
