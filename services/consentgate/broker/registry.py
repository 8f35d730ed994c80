"""The local schema registry: Apicurio Registry run from its Maven Central distribution.

Apicurio Registry speaks the Confluent Schema Registry REST API at ``/apis/ccompat/v7``, so
``confluent_kafka.schema_registry.SchemaRegistryClient`` and the Avro (de)serializers work
against it unchanged. No Docker is involved:

* ``deploy/local/registry-pom.xml`` pins the version; :func:`ensure_registry` has Maven unpack
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

import collections
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from consentgate.broker.prereqs import find_maven, port_in_use
from consentgate.broker.process import alive
from consentgate.errors import BrokerError, BrokerSetupError

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

POM = Path(__file__).resolve().parents[3] / "deploy" / "local" / "registry-pom.xml"
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
_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')

Progress = Callable[[str], None]


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
    try:
        text = pom.read_text(encoding="utf-8")
    except OSError as exc:
        raise BrokerSetupError(f"cannot read the registry pom {pom}: {exc}") from exc
    match = re.search(r"<registry\.version>([^<]+)</registry\.version>", text)
    if not match:
        raise BrokerSetupError(f"{pom} pins no <registry.version>")
    return match.group(1).strip()


def _cache_root() -> Path:
    env = os.environ.get("CONSENTGATE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "consentgate"


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
    home = (cache_dir or _cache_root() / "registry") / version
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
    mvn = find_maven()
    partial = home.with_name(f"{home.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    say(f"fetching Apicurio Registry {version} (about 160 MB) from Maven Central into {home}")
    started = time.monotonic()
    cmd = [
        str(mvn),
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        "generate-resources",
        f"-Dregistry.version={version}",
        f"-Dregistry.dir={partial}",
    ]
    try:
        _run_maven(cmd, version, say)
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


def _run_maven(cmd: list[str], version: str, say: Progress) -> None:
    tail: collections.deque[str] = collections.deque(maxlen=25)
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise BrokerSetupError(f"cannot run Maven ({cmd[0]}): {exc}") from exc
    with proc:
        for raw in proc.stdout or ():
            line = raw.rstrip()
            tail.append(line)
            if "apicurio-registry-app" in line and (
                "Downloading from" in line or "Downloaded from" in line
            ):
                say(line.removeprefix("[INFO] "))
            elif "Expanding:" in line or "Unpacking" in line:
                say("unpacking…")
    if proc.returncode == 0:
        return
    generic = ("[ERROR] To see", "[ERROR] Re-run", "[ERROR] For more", "[ERROR] [Help")
    errors = [
        line
        for line in tail
        if line.startswith("[ERROR] ")
        and line.strip() != "[ERROR]"
        and not line.startswith(generic)
    ]
    text = "\n".join(errors[:3] or tail)
    coordinates = f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
    if "Failed to read artifact descriptor" in text:
        # e.g. 3.0.9: its parent POM io.apicurio:apicurio-registry:3.0.9 is not served
        hint = f"the POM (or parent POM) of {coordinates} is not on Maven Central"
    elif "Could not find artifact" in text or "was not found in" in text:
        hint = f"{coordinates} is not on Maven Central (is the version right?)"
    elif any(s in text for s in ("Could not transfer", "Unknown host", "Connect", "timed out")):
        hint = (
            f"no Maven repository reachable while fetching {coordinates} "
            "(check the network, a proxy, or ~/.m2/settings.xml)"
        )
    else:
        hint = f"Maven failed (exit {proc.returncode}) while fetching {coordinates}"
    raise BrokerSetupError(f"{hint}:\n{text}")


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


# -- java ----------------------------------------------------------------------------------
def _java_major(java: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _JAVA_VERSION.search(out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def _java_candidates(java: Path | None) -> Iterable[Path]:
    if java is not None:
        yield java if java.name == "java" else java / "bin" / "java"
    for var in ("CONSENTGATE_REGISTRY_JAVA_HOME", "CONSENTGATE_JAVA_HOME", "JAVA_HOME"):
        home = os.environ.get(var)
        if home:
            yield Path(home) / "bin" / "java"
    found = shutil.which("java")
    if found:
        yield Path(found)
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        yield from sorted(jvm.glob("*/bin/java"))


def find_registry_java(min_major: int, java: Path | None = None) -> Path:
    """A ``java`` of at least ``min_major``.

    Looked for in order: ``java`` (an executable or a Java home), $CONSENTGATE_REGISTRY_JAVA_HOME,
    $CONSENTGATE_JAVA_HOME, $JAVA_HOME, ``java`` on PATH, then every JDK under /usr/lib/jvm.
    """
    seen: dict[Path, int | None] = {}
    for candidate in _java_candidates(java):
        resolved = candidate.resolve()
        if resolved in seen or not resolved.is_file():
            continue
        major = seen[resolved] = _java_major(resolved)
        if major is not None and major >= min_major:
            return candidate
    found = ", ".join(f"{p} (Java {m if m is not None else '?'})" for p, m in seen.items())
    raise BrokerSetupError(
        f"the local schema registry needs Java {min_major}+ and none was found"
        f" (looked at: {found or 'nothing'}); install a JDK {min_major}+ (Debian 12 has none: "
        "e.g. Eclipse Temurin) and set CONSENTGATE_REGISTRY_JAVA_HOME to it"
    )


# -- running ---------------------------------------------------------------------------------
def _paths(state_dir: Path) -> tuple[Path, Path, Path, Path]:
    root = state_dir.absolute() / "registry"
    return root, root / "registry.pid", root / "registry.json", root / "registry.log"


def registry_url(port: int) -> str:
    """The Confluent-compatible base URL of a local registry on ``port``."""
    return f"http://{HOST}:{port}{CCOMPAT_PATH}"


def _answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=timeout) as resp:  # noqa: S310
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# Registries this process started: polling their Popen reaps them (and keeps Popen from
# warning, when collected, that its child still runs).
_children: dict[int, subprocess.Popen[bytes]] = {}


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    return alive(pid)


def _our_pid(state_dir: Path) -> int | None:
    """The pid of this state dir's registry if it runs, else None (stale files removed)."""
    root, pid_file, _, _ = _paths(state_dir)
    try:
        pid = int(pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    if not _alive(pid) or f"{_TAG}{root}".encode() not in cmdline.split(b"\0"):
        pid_file.unlink(missing_ok=True)
        return None
    return pid


def registry_status(state_dir: Path) -> RegistryProcess | None:
    """The registry this state dir started, if it still runs, else None."""
    pid = _our_pid(state_dir)
    if pid is None:
        return None
    _, _, info_file, log_file = _paths(state_dir)
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
        log_file=log_file,
        started=False,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


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
                f"answer; stop it first. Log:\n{_tail(current.log_file)}"
            )
        return current
    if port == 0:
        port = _free_port()
    elif port_in_use(port, HOST):
        raise BrokerSetupError(
            f"port {HOST}:{port} is taken by another process; stop it or choose another port"
        )
    install = ensure_registry(version, progress=progress)
    java_exe = find_registry_java(install.java_major, java)
    root, pid_file, info_file, log_file = _paths(state_dir)
    root.mkdir(parents=True, exist_ok=True)
    if log_file.exists():
        log_file.replace(log_file.with_name(log_file.name + ".1"))
    cmd = [
        str(java_exe),
        f"{_TAG}{root}",
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
    began = time.monotonic()
    with log_file.open("ab") as out:
        try:
            # cwd = root: Quarkus also reads ./.env and ./config/application.properties
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=root,
                start_new_session=True,
            )
        except OSError as exc:
            raise BrokerSetupError(f"cannot run {java_exe}: {exc}") from exc
    _children[proc.pid] = proc
    pid_file.write_text(str(proc.pid), encoding="utf-8")
    info_file.write_text(
        json.dumps(
            {
                "port": port,
                "url": url,
                "version": install.version,
                "pid": proc.pid,
                "java": str(java_exe),
            }
        ),
        encoding="utf-8",
    )
    deadline = began + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            _children.pop(proc.pid, None)
            pid_file.unlink(missing_ok=True)
            raise BrokerError(
                f"the schema registry exited with code {code} during start-up; "
                f"end of {log_file}:\n{_tail(log_file)}"
            )
        if _answers(url, timeout=1.0):
            log.info(
                "schema registry %s ready at %s in %.1f s (pid %d)",
                install.version,
                url,
                time.monotonic() - began,
                proc.pid,
            )
            return RegistryProcess(
                url=url,
                port=port,
                pid=proc.pid,
                version=install.version,
                log_file=log_file,
                started=True,
            )
        time.sleep(0.2)
    stop_registry(state_dir, timeout=10.0)
    raise BrokerError(
        f"the schema registry did not answer GET {url}/subjects within {timeout:.1f} s; "
        f"end of {log_file}:\n{_tail(log_file)}"
    )


def stop_registry(state_dir: Path, *, timeout: float = 20.0) -> bool:
    """Stop this state dir's registry: SIGTERM, then SIGKILL after ``timeout`` seconds.

    Returns False when it was not running.
    """
    pid = _our_pid(state_dir)
    if pid is None:
        return False
    _, pid_file, _, _ = _paths(state_dir)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return True
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            log.warning("registry pid %d ignored SIGTERM for %.0f s: killing it", pid, timeout)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            kill_deadline = time.monotonic() + 10.0
            while _alive(pid) and time.monotonic() < kill_deadline:
                time.sleep(0.1)
            if _alive(pid):
                raise BrokerError(f"registry pid {pid} survived SIGKILL")
            break
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True
