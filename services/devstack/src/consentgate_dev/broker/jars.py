"""Apache Kafka's broker jars, resolved from Maven Central into a cache outside the repo.

``pom.xml`` beside this module pins the Kafka version and the log4j2 binding; Maven's
``dependency:copy-dependencies`` copies the runtime closure into
``~/.cache/consentgate/kafka/<version>/libs`` (or ``$CONSENTGATE_CACHE_DIR``). A marker file
written last makes an interrupted download count as missing.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from consentgate_dev import jvm
from consentgate_dev.errors import BrokerSetupError

__all__ = ["POM", "cache_root", "ensure_jars", "kafka_version"]

log = logging.getLogger(__name__)

POM = Path(__file__).with_name("pom.xml")
_MARKER = ".complete"


def kafka_version(pom: Path = POM) -> str:
    """The Kafka version pinned in the pom."""
    return jvm.pom_property(pom, "kafka.version", "broker")


def cache_root() -> Path:
    """Where downloaded JVM programs are kept: ``$CONSENTGATE_CACHE_DIR`` or the user's cache."""
    env = os.environ.get("CONSENTGATE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "consentgate"


def ensure_jars(pom: Path = POM) -> Path:
    """The directory holding the broker's classpath, downloading it on first use."""
    version = kafka_version(pom)
    libs = cache_root() / "kafka" / version / "libs"
    if (libs / _MARKER).exists():
        return libs
    libs.mkdir(parents=True, exist_ok=True)
    log.info("downloading Apache Kafka %s jars from Maven Central into %s", version, libs)
    started = time.monotonic()
    jvm.run_maven(
        [
            "--no-transfer-progress",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        coordinates=f"org.apache.kafka:kafka_2.13:{version}",
        say=log.info,
    )
    jars = list(libs.glob("*.jar"))
    if not any(j.name.startswith("kafka_2.13-") for j in jars):
        raise BrokerSetupError(f"Maven ran but {libs} holds no kafka_2.13 jar")
    (libs / _MARKER).write_text(version, encoding="utf-8")
    log.info("fetched %d jars in %.1f s", len(jars), time.monotonic() - started)
    return libs
