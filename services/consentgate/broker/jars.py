"""Apache Kafka's broker jars, resolved from Maven Central into a cache outside the repo.

``deploy/local/pom.xml`` pins the Kafka version and the log4j2 binding; Maven's
``dependency:copy-dependencies`` copies the runtime closure into
``~/.cache/consentgate/kafka/<version>/libs`` (or ``$CONSENTGATE_CACHE_DIR``). A marker file
written last makes an interrupted download count as missing.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from pathlib import Path

from consentgate.broker.prereqs import find_maven
from consentgate.errors import BrokerSetupError

__all__ = ["POM", "ensure_jars", "kafka_version"]

log = logging.getLogger(__name__)

POM = Path(__file__).resolve().parents[3] / "deploy" / "local" / "pom.xml"
_MARKER = ".complete"


def kafka_version(pom: Path = POM) -> str:
    """The Kafka version pinned in the pom."""
    try:
        text = pom.read_text(encoding="utf-8")
    except OSError as exc:
        raise BrokerSetupError(f"cannot read the broker pom {pom}: {exc}") from exc
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", text)
    if not match:
        raise BrokerSetupError(f"{pom} pins no <kafka.version>")
    return match.group(1).strip()


def cache_root() -> Path:
    env = os.environ.get("CONSENTGATE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "consentgate"


def ensure_jars(pom: Path = POM) -> Path:
    """The directory holding the broker's classpath, downloading it on first use."""
    version = kafka_version(pom)
    libs = cache_root() / "kafka" / version / "libs"
    if (libs / _MARKER).exists():
        return libs
    mvn = find_maven()
    libs.mkdir(parents=True, exist_ok=True)
    log.info("downloading Apache Kafka %s jars from Maven Central into %s", version, libs)
    started = time.monotonic()
    cmd = [
        str(mvn),
        "-B",
        "--no-transfer-progress",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        hint = (
            "no Maven repository reachable (check network/proxy or ~/.m2/settings.xml)"
            if "Could not transfer" in tail or "resolve" in tail.lower()
            else "Maven failed"
        )
        raise BrokerSetupError(f"{hint} while fetching Kafka {version}:\n{tail}")
    jars = list(libs.glob("*.jar"))
    if not any(j.name.startswith("kafka_2.13-") for j in jars):
        raise BrokerSetupError(f"Maven ran but {libs} holds no kafka_2.13 jar")
    (libs / _MARKER).write_text(version, encoding="utf-8")
    log.info("fetched %d jars in %.1f s", len(jars), time.monotonic() - started)
    return libs
