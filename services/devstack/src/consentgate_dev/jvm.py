"""The one JVM launcher of the development stack: Java, Maven, and JVMs run in the background.

The local Kafka broker and the local schema registry are both Java programs fetched from
Maven Central and run detached from the shell that started them. What they share lives here:

* :func:`find_java` looks for a ``java`` of at least a given major version: an explicit one,
  then ``$CONSENTGATE_JAVA_HOME`` / ``$JAVA_HOME`` (and any extra variables), ``java`` on
  PATH, then every JDK under /usr/lib/jvm. Each failure says what to install or set.
* :func:`run_maven` runs Maven, shows the lines that say something, and turns its failure
  into a :class:`BrokerSetupError` naming the likely cause.
* :class:`Daemon` is one background JVM: a pid file, a log file, and a tag on its command
  line that tells it from any other process that may have taken a stale pid.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from consentgate_dev.errors import BrokerError, BrokerSetupError

__all__ = [
    "JVM_DIRS",
    "MIN_JAVA",
    "Daemon",
    "Progress",
    "alive",
    "find_java",
    "find_maven",
    "free_port",
    "java_major",
    "pom_property",
    "port_in_use",
    "require_java",
    "run_maven",
    "tail",
]

log = logging.getLogger(__name__)

MIN_JAVA = 17
JVM_DIRS: tuple[Path, ...] = (Path("/usr/lib/jvm"),)  # where distributions install JDKs
INSTALL_HINT = "Debian/Ubuntu: apt-get install openjdk-17-jre-headless"
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')

Progress = Callable[[str], None]


# -- java ------------------------------------------------------------------------------------
def java_major(java: Path) -> int | None:
    """The major version of a ``java`` executable (8 for 1.8), None when it cannot tell."""
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def require_java(java: Path, min_major: int = MIN_JAVA, *, what: str = "the local broker") -> int:
    """``java``'s major version; BrokerSetupError when it is unknown or below ``min_major``."""
    major = java_major(java)
    if major is None:
        raise BrokerSetupError(f"cannot run {java} -version, or tell its version")
    if major < min_major:
        raise BrokerSetupError(
            f"{java} is Java {major}; {what} needs Java {min_major}+ "
            f"({INSTALL_HINT}, then set CONSENTGATE_JAVA_HOME)"
        )
    return major


def _candidates(java: Path | None, env_vars: Sequence[str]) -> Iterable[Path]:
    if java is not None:
        yield java if java.name == "java" else java / "bin" / "java"
    for var in (*env_vars, "CONSENTGATE_JAVA_HOME", "JAVA_HOME"):
        home = os.environ.get(var)
        if home:
            yield Path(home) / "bin" / "java"
    found = shutil.which("java")
    if found:
        yield Path(found)
    for root in JVM_DIRS:
        if root.is_dir():
            yield from sorted(root.glob("*/bin/java"))


def find_java(
    min_major: int = MIN_JAVA,
    java: Path | None = None,
    *,
    env_vars: Sequence[str] = (),
    what: str = "the local Kafka broker",
) -> Path:
    """The first ``java`` of at least ``min_major``, looked for in the order of the module doc.

    ``java`` is an executable or a Java home; ``env_vars`` name Java homes looked at first.
    """
    seen: dict[Path, int | None] = {}
    for candidate in _candidates(java, env_vars):
        resolved = candidate.resolve()
        if resolved in seen or not resolved.is_file():
            continue
        major = seen[resolved] = java_major(resolved)
        if major is not None and major >= min_major:
            return candidate
    if not seen:
        raise BrokerSetupError(
            f"no Java found: {what} needs Java {min_major}+ ({INSTALL_HINT}), or set "
            "CONSENTGATE_JAVA_HOME, or point CONSENTGATE_BOOTSTRAP at an existing cluster"
        )
    found = ", ".join(f"{p} (Java {m if m is not None else '?'})" for p, m in seen.items())
    names = " or ".join((*env_vars, "CONSENTGATE_JAVA_HOME"))
    raise BrokerSetupError(
        f"{what} needs Java {min_major}+ and none was found (looked at: {found}); install a "
        f"JDK {min_major}+ and set {names} to it"
    )


# -- maven -----------------------------------------------------------------------------------
def pom_property(pom: Path, name: str, what: str) -> str:
    """The ``<name>`` property a pom pins (``kafka.version``), or BrokerSetupError."""
    try:
        text = pom.read_text(encoding="utf-8")
    except OSError as exc:
        raise BrokerSetupError(f"cannot read the {what} pom {pom}: {exc}") from exc
    match = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", text)
    if not match:
        raise BrokerSetupError(f"{pom} pins no <{name}>")
    return match.group(1).strip()


def find_maven() -> Path:
    """The ``mvn`` executable, needed once to fetch a JVM program from Maven Central."""
    found = shutil.which("mvn")
    if not found:
        raise BrokerSetupError(
            "no Maven found: the first start of the local broker downloads Apache Kafka's "
            "jars with Maven (Debian/Ubuntu: apt-get install maven)"
        )
    return Path(found)


def run_maven(
    args: Sequence[str],
    *,
    coordinates: str,
    say: Progress,
    show: Callable[[str], str | None] = lambda line: None,
) -> None:
    """Run ``mvn -B <args>``; ``show`` maps an output line to what ``say`` gets (None: nothing).

    A failure raises BrokerSetupError with its cause as far as Maven's output tells it, and
    the error lines themselves.
    """
    cmd = [str(find_maven()), "-B", "-Dstyle.color=never", *args]
    last: collections.deque[str] = collections.deque(maxlen=25)
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
            last.append(line)
            shown = show(line)
            if shown:
                say(shown)
    if proc.returncode == 0:
        return
    generic = ("[ERROR] To see", "[ERROR] Re-run", "[ERROR] For more", "[ERROR] [Help")
    errors = [
        line
        for line in last
        if line.startswith("[ERROR] ")
        and line.strip() != "[ERROR]"
        and not line.startswith(generic)
    ]
    text = "\n".join(errors[:3] or last)
    if "Failed to read artifact descriptor" in text:
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


# -- ports -----------------------------------------------------------------------------------
def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# -- background processes --------------------------------------------------------------------
# JVMs this process started: polling their Popen reaps them (and keeps Popen from warning,
# when collected, that its child still runs).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a reaped or zombie process counts as dead."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        waited = 0  # not our child: ask /proc
    if waited == pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    return stat.split(")")[-1].split()[0] != "Z"


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ("(no log)" when there is none)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Daemon:
    """One background JVM, known by its pid file and by ``tag`` on its command line."""

    name: str  # for messages: "broker", "schema registry"
    pid_file: Path
    log_file: Path  # the JVM's stdout and stderr
    tag: str  # a command-line argument only this program's JVM carries
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def pid(self) -> int | None:
        """The pid of this JVM while it runs, else None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        if not alive(pid) or self.tag.encode() not in cmdline.split(b"\0"):
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def launch(self, cmd: Sequence[str], *, cwd: Path | None = None) -> int:
        """Start ``cmd`` in its own session, output appended to the log; returns its pid."""
        if self.tag not in cmd:
            raise ValueError(f"the {self.name}'s command line lacks its tag {self.tag!r}")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            try:
                proc = subprocess.Popen(
                    list(cmd),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise BrokerSetupError(f"cannot run {cmd[0]}: {exc}") from exc
        _CHILDREN[proc.pid] = proc
        self._proc = proc
        self.pid_file.write_text(str(proc.pid), encoding="utf-8")
        return proc.pid

    def exit_code(self) -> int | None:
        """The launched JVM's exit code once it has exited (None while it runs)."""
        if self._proc is None:
            return None
        code = self._proc.poll()
        if code is not None:
            _CHILDREN.pop(self._proc.pid, None)
            self.pid_file.unlink(missing_ok=True)
        return code

    def wait_until(
        self, ready: Callable[[], bool], *, timeout: float, describe: Callable[[], str]
    ) -> float:
        """Poll ``ready`` until it holds; seconds taken. BrokerError (and the JVM stopped)
        when the JVM exits or ``timeout`` passes first; ``describe`` gives the log to show."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            code = self.exit_code()
            if code is not None:
                raise BrokerError(
                    f"the {self.name} exited with code {code} during start-up:\n{describe()}"
                )
            if ready():
                return time.monotonic() - began
            time.sleep(0.2)
        self.stop(timeout=10.0)
        raise BrokerError(f"the {self.name} did not answer within {timeout:.0f} s:\n{describe()}")

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; False when it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return True
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            log.warning("%s pid %d ignored SIGTERM for %.0f s: killing it", self.name, pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 10.0
            while alive(pid) and time.monotonic() < kill_deadline:
                time.sleep(0.1)
            if alive(pid):
                raise BrokerError(f"{self.name} pid {pid} survived SIGKILL")
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            child.wait(timeout=30)
        self.pid_file.unlink(missing_ok=True)
        return True
