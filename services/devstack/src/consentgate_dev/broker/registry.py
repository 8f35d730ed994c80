"""The local schema registry: Apicurio Registry run from its Maven Central distribution.

Apicurio Registry speaks the Confluent Schema Registry REST API at ``/apis/ccompat/v7``, so
``confluent_kafka.schema_registry.SchemaRegistryClient`` and the Avro (de)serializers work
against it unchanged. No Docker is involved:

* ``registry-pom.xml`` beside this module pins the version; :func:`ensure_registry` has Maven unpack
  ``io.apicurio:apicurio-registry-app:<version>:tar.gz:all`` (a ready-built Quarkus app, about
  160 MB) into ``~/.cache/consentgate/registry/<version>`` (or ``$CONSENTGATE_CACHE_DIR``).
  A marker file written last makes an interrupted download count as missing.
* :func:`start_registry` runs it with ``java -jar`` on 127.0.0.1 only, storage in memory (H2),
  so every start begins empty. State lives in ``<state_dir>/registry``: ``registry.pid``,
  ``registry.json`` (port, url, version) and ``registry.log`` (the JVM's whole output).
* :func:`stop_registry` sends SIGTERM, then SIGKILL after a timeout.

Apicurio 3.3.x is compiled for Java 21; the Java needed is read from the downloaded classes,
and a suitable ``java`` is looked for in the usual places (see :func:`find_registry_java`).
Unlike Confluent's registry, Apicurio's global compatibility defaults to NONE; we start it
with BACKWARD, Confluent's default, unless told otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from consentgate_dev import jvm
from consentgate_dev.broker.jars import cache_root
from consentgate_dev.errors import BrokerError, BrokerSetupError

__all__ = [
    "CCOMPAT_PATH",
    "DEFAULT_HEAP",
    "DEFAULT_PORT",
    "POM",
    "RegistryInstall",
    "RegistryProcess",
    "ensure_registry",
    "find_registry_java",
    "registry_status",
    "registry_url",
    "registry_version",
    "start_registry",
    "stop_registry",
]

log = logging.getLogger(__name__)

POM = Path(__file__).with_name("registry-pom.xml")
CCOMPAT_PATH = "/apis/ccompat/v7"
DEFAULT_PORT = 18081
DEFAULT_HEAP = "128m"
HOST = "127.0.0.1"

_MARKER = ".consentgate-complete.json"
_TAG = "-Dconsentgate.registry="  # on the JVM's command line: tells our process from others
_COMPATIBILITY = frozenset(
    {
        "NONE",
        "BACKWARD",
        "BACKWARD_TRANSITIVE",
        "FORWARD",
        "FORWARD_TRANSITIVE",
        "FULL",
        "FULL_TRANSITIVE",
    }
)
Progress = jvm.Progress


@dataclass(frozen=True)
class RegistryInstall:
    """An unpacked Apicurio Registry distribution."""

    version: str
    home: Path
    launcher: Path  # quarkus-run.jar (fast-jar, 3.1+) or *-runner.jar (legacy jar, 3.0.x)
    java_major: int  # the least Java that runs it


@dataclass(frozen=True)
class RegistryProcess:
    """A running local registry."""

    url: str  # the Confluent-compatible base URL, for SchemaRegistryClient({"url": url})
    port: int
    pid: int
    version: str
    log_file: Path
    started: bool  # False when start_registry found it already running


# -- download -----------------------------------------------------------------------------
def registry_version(pom: Path = POM) -> str:
    """The Apicurio Registry version pinned in the pom."""
    return jvm.pom_property(pom, "registry.version", "registry")


def ensure_registry(
    version: str | None = None,
    *,
    pom: Path = POM,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> RegistryInstall:
    """The unpacked registry, downloading it from Maven Central on first use.

    ``progress`` receives one line per step (Maven's download and unpack lines included);
    by default they go to this module's logger.
    """
    version = version or registry_version(pom)
    say: Progress = progress or log.info
    home = (cache_dir or cache_root() / "registry") / version
    marker = home / _MARKER
    if marker.exists():
        try:
            meta = json.loads(marker.read_text(encoding="utf-8"))
            return RegistryInstall(
                version=version,
                home=home,
                launcher=home / str(meta["launcher"]),
                java_major=int(meta["java_major"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            say(f"ignoring the unreadable marker {marker}: fetching again")
    partial = home.with_name(f"{home.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    say(f"fetching Apicurio Registry {version} (about 160 MB) from Maven Central into {home}")
    started = time.monotonic()
    try:
        jvm.run_maven(
            [
                "-f",
                str(pom),
                "generate-resources",
                f"-Dregistry.version={version}",
                f"-Dregistry.dir={partial}",
            ],
            coordinates=f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all",
            say=say,
            show=_maven_line,
        )
        launcher = _find_launcher(partial)
        java_major = _required_java(partial, launcher)
        shutil.rmtree(partial / ".maven", ignore_errors=True)
        (partial / _MARKER).write_text(
            json.dumps(
                {
                    "version": version,
                    "launcher": str(launcher.relative_to(partial)),
                    "java_major": java_major,
                }
            ),
            encoding="utf-8",
        )
        shutil.rmtree(home, ignore_errors=True)  # a stale, unmarked copy
        partial.rename(home)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    say(
        f"Apicurio Registry {version} ready in {time.monotonic() - started:.1f} s "
        f"(needs Java {java_major}+)"
    )
    return RegistryInstall(
        version=version,
        home=home,
        launcher=home / launcher.relative_to(partial),
        java_major=java_major,
    )


def _maven_line(line: str) -> str | None:
    """What of Maven's output is worth a line of progress."""
    if "apicurio-registry-app" in line and (
        "Downloading from" in line or "Downloaded from" in line
    ):
        return line.removeprefix("[INFO] ")
    if "Expanding:" in line or "Unpacking" in line:
        return "unpacking…"
    return None


def _find_launcher(home: Path) -> Path:
    fast = home / "quarkus-run.jar"
    if fast.is_file():
        return fast
    legacy = sorted(home.glob("*-runner.jar"))
    if legacy:
        return legacy[0]
    raise BrokerError(
        f"the unpacked registry in {home} has neither quarkus-run.jar nor a *-runner.jar"
    )


def _required_java(home: Path, launcher: Path) -> int:
    """The Java major version the registry's own classes are compiled for (at least 17)."""
    jars = [*sorted((home / "app").glob("*.jar")), launcher]
    for jar in jars:
        try:
            with zipfile.ZipFile(jar) as zf:
                for name in zf.namelist():
                    if name.startswith("io/apicurio/registry/") and name.endswith(".class"):
                        with zf.open(name) as fh:
                            head = fh.read(8)
                        if head[:4] == b"\xca\xfe\xba\xbe":
                            return max(17, int.from_bytes(head[6:8], "big") - 44)
        except (OSError, zipfile.BadZipFile):
            continue
    return 17


def find_registry_java(min_major: int, java: Path | None = None) -> Path:
    """A ``java`` of at least ``min_major``: ``java`` (an executable or a Java home),
    $CONSENTGATE_REGISTRY_JAVA_HOME, then where :func:`jvm.find_java` looks."""
    return jvm.find_java(
        min_major,
        java,
        env_vars=("CONSENTGATE_REGISTRY_JAVA_HOME",),
        what="the local schema registry (Debian 12 has no such JDK: e.g. Eclipse Temurin)",
    )


# -- running ---------------------------------------------------------------------------------
def _paths(state_dir: Path) -> tuple[Path, Path]:
    """The registry's state folder and its info file (port, url, version)."""
    root = state_dir.absolute() / "registry"
    return root, root / "registry.json"


def _daemon(state_dir: Path) -> jvm.Daemon:
    root, _ = _paths(state_dir)
    return jvm.Daemon(
        name="schema registry",
        pid_file=root / "registry.pid",
        log_file=root / "registry.log",
        tag=f"{_TAG}{root}",
    )


def registry_url(port: int) -> str:
    """The Confluent-compatible base URL of a local registry on ``port``."""
    return f"http://{HOST}:{port}{CCOMPAT_PATH}"


def _answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=timeout) as resp:  # noqa: S310
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def registry_status(state_dir: Path) -> RegistryProcess | None:
    """The registry this state dir started, if it still runs, else None."""
    daemon = _daemon(state_dir)
    pid = daemon.pid()
    if pid is None:
        return None
    _, info_file = _paths(state_dir)
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
        port, version = int(info["port"]), str(info["version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BrokerError(f"registry pid {pid} runs but {info_file} is unreadable: {exc}") from exc
    return RegistryProcess(
        url=registry_url(port),
        port=port,
        pid=pid,
        version=version,
        log_file=daemon.log_file,
        started=False,
    )


def start_registry(
    state_dir: Path,
    *,
    port: int = DEFAULT_PORT,
    version: str | None = None,
    java: Path | None = None,
    heap: str = DEFAULT_HEAP,
    compatibility: str | None = "BACKWARD",
    timeout: float = 120.0,
    progress: Progress | None = None,
) -> RegistryProcess:
    """Start the registry on 127.0.0.1:``port`` (0 = any free port) and wait until it answers.

    Downloads it first if needed. Returns the running registry's address; when this state dir's
    registry already runs it is returned with ``started=False``. ``compatibility`` is the global
    compatibility level it starts with (None keeps Apicurio's default, NONE).
    """
    if compatibility is not None and compatibility not in _COMPATIBILITY:
        raise BrokerSetupError(
            f"unknown compatibility {compatibility!r}; one of {sorted(_COMPATIBILITY)}"
        )
    current = registry_status(state_dir)
    if current is not None:
        if port not in (0, current.port):
            raise BrokerError(
                f"the registry of {state_dir} already runs on port {current.port} "
                f"(pid {current.pid}); stop it first to use port {port}"
            )
        if not _answers(current.url):
            raise BrokerError(
                f"registry pid {current.pid} runs but {current.url} does not "
                f"answer; stop it first. Log:\n{jvm.tail(current.log_file)}"
            )
        return current
    if port == 0:
        port = jvm.free_port(HOST)
    elif jvm.port_in_use(port, HOST):
        raise BrokerSetupError(
            f"port {HOST}:{port} is taken by another process; stop it or choose another port"
        )
    install = ensure_registry(version, progress=progress)
    java_exe = find_registry_java(install.java_major, java)
    root, info_file = _paths(state_dir)
    daemon = _daemon(state_dir)
    log_file = daemon.log_file
    root.mkdir(parents=True, exist_ok=True)
    if log_file.exists():
        log_file.replace(log_file.with_name(log_file.name + ".1"))
    cmd = [
        str(java_exe),
        daemon.tag,
        "-Xms32m",
        f"-Xmx{heap}",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Xss512k",
        "-XX:ReservedCodeCacheSize=64m",
        "-XX:+ExitOnOutOfMemoryError",
        f"-Djava.io.tmpdir={root}",
        f"-Dquarkus.http.host={HOST}",
        f"-Dquarkus.http.port={port}",
        # 3.1+ has a management interface (health, metrics), by default on 0.0.0.0:9000
        f"-Dquarkus.management.host={HOST}",
        "-Dquarkus.management.port=0",
        "-Dquarkus.http.access-log.enabled=false",
        f"-Dapicurio.storage.snapshot.location={root}",
        f"-Dapicurio.import.work-dir={root}",
        # a handful of H2 connections, not Apicurio's 20..100
        "-Dapicurio.datasource.jdbc.initial-size=2",
        "-Dapicurio.datasource.jdbc.min-size=2",
        "-Dapicurio.datasource.jdbc.max-size=16",
    ]
    if compatibility is not None:
        cmd.append(f"-Dapicurio.rules.global.compatibility={compatibility}")
    cmd += ["-jar", str(install.launcher)]
    url = registry_url(port)
    # cwd = root: Quarkus also reads ./.env and ./config/application.properties
    pid = daemon.launch(cmd, cwd=root)
    info_file.write_text(
        json.dumps(
            {
                "port": port,
                "url": url,
                "version": install.version,
                "pid": pid,
                "java": str(java_exe),
            }
        ),
        encoding="utf-8",
    )
    took = daemon.wait_until(
        lambda: _answers(url, timeout=1.0),
        timeout=timeout,
        describe=lambda: f"end of {log_file}:\n{jvm.tail(log_file)}",
    )
    log.info("schema registry %s ready at %s in %.1f s (pid %d)", install.version, url, took, pid)
    return RegistryProcess(
        url=url, port=port, pid=pid, version=install.version, log_file=log_file, started=True
    )


def stop_registry(state_dir: Path, *, timeout: float = 20.0) -> bool:
    """Stop this state dir's registry: SIGTERM, then SIGKILL after ``timeout`` seconds.

    Returns False when it was not running.
    """
    return _daemon(state_dir).stop(timeout)
