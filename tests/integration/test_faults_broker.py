"""The broker under the services: stopped and restarted mid-run (SIGTERM, then SIGKILL), its
disk filled up, and a topic deleted under a running router. On a broker of its own (the
session's broker is shared by every other test).

Restart: the router and the consent fold must recover without a hand on them, or stop with
a clear error (exit 70, no traceback) and resume when started again; either way every event
ends with exactly one decision, nothing leaks (audit PASS), and the consent view is not
left denying everything (the v1 router's defect: after a broker restart it denied every
event forever). A full disk (the broker's log dir on a small file system of its own; Kafka
stops a broker whose last log dir fails): the router stops with a clear error, and once
there is room again and the broker is back, every event has exactly one decision. A deleted
topic: fail-stop with a clear error, and no commit past input it did not process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from consentgate_dev.broker.local import LocalBroker
from consentgate_dev.demo.policygen import PolicyPlan
from consentgate_dev.jvm import free_port
from consentgate_dev.settings import DevSettings
from tests.integration import faults
from tests.integration.faults import Stream, audit, grant, scale, write_report
from tests.integration.router_harness import RouterEnv, RouterProcess

pytestmark = [pytest.mark.integration, pytest.mark.faults, faults.TIMEOUT]

EXIT_FATAL = 70


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    broker = LocalBroker(
        DevSettings(
            state_dir=tmp_path / "own-broker",
            broker_port=free_port(),
            broker_controller_port=free_port(),
            broker_heap="384m",
        )
    )
    broker.start(timeout=180)
    try:
        yield broker
    finally:
        broker.stop()


SMALL_DISK_MIB = 96
TXN_TIMEOUT_MS = 10_000  # the router's transaction timeout in the disk-full test


def _mount_small_disk(mount_at: Path, image: Path) -> str:
    """An ext4 file system in ``image`` (a disk that fills up as real ones do), else a tmpfs,
    mounted at ``mount_at``; skips when this user may not mount (root is needed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small disk for the broker needs root (CI runs as root)")
    tried = []
    if shutil.which("mkfs.ext4") and shutil.which("fallocate"):
        steps = [
            ["fallocate", "-l", f"{SMALL_DISK_MIB}M", str(image)],
            ["mkfs.ext4", "-q", "-F", str(image)],
            ["mount", "-o", "loop", str(image), str(mount_at)],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tried.append(f"{' '.join(step)}: {done.stderr.strip()}")
                break
        else:
            (mount_at / "lost+found").rmdir()  # the broker wants an empty (or its own) dir
            return "ext4"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK_MIB}m", "tmpfs", str(mount_at)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        return "tmpfs"
    tried.append(f"mount tmpfs: {done.stderr.strip()}")
    pytest.skip(f"no small disk could be mounted: {'; '.join(tried)}")


@pytest.fixture
def small_disk_broker(tmp_path: Path) -> Iterator[tuple[LocalBroker, Path, str]]:
    """A broker of its own whose log dir is a file system of :data:`SMALL_DISK_MIB` MiB:
    the broker, its log dir and the kind of file system."""
    state = tmp_path / "own-broker"
    data = state / "broker" / "data"  # LocalBroker's log dir
    data.mkdir(parents=True)
    kind = _mount_small_disk(data, tmp_path / "disk.img")
    broker = LocalBroker(
        DevSettings(
            state_dir=state,
            broker_port=free_port(),
            broker_controller_port=free_port(),
            broker_heap="384m",
        )
    )
    try:
        broker.start(timeout=180)
        yield broker, data, kind
    finally:
        broker.stop()
        subprocess.run(["umount", "-l", str(data)], check=False)


def _fill(folder: Path) -> int:
    """Write zeros into ``folder`` until the file system says no; the bytes written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with open(folder / "filler", "wb", buffering=0) as out:
        try:
            while True:
                written += out.write(chunk)
        except OSError:
            pass
    return written


def _env(broker: LocalBroker, workdir: Path, tag: str) -> RouterEnv:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    plan = PolicyPlan(partners=["client-01"], score_partners=[], suffix=f".{tag}")
    folder = workdir / tag
    folder.mkdir()
    return RouterEnv(broker.bootstrap, admin, folder, plan)


def _kill_broker(broker: LocalBroker) -> None:
    pid = broker.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while broker.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.1)


def _survivor(env: RouterEnv, process: RouterProcess, restarts: list[str]) -> RouterProcess:
    """The router, or its successor if it stopped: it must have stopped with a clear error."""
    code = process.proc.poll()
    if code is None:
        return process
    log = process.log.read_text()
    assert code == EXIT_FATAL, f"router exit {code}:\n{log[-3000:]}"
    assert "Traceback" not in log, log[-3000:]
    restarts.append(log.strip().splitlines()[-1][-200:])
    return env.start_router(consent_wait=2.0)


def test_broker_restarts_under_router_and_fold_lose_and_leak_nothing(
    own_broker: LocalBroker, tmp_path: Path
) -> None:
    env = _env(own_broker, tmp_path, "restart")
    subjects = [f"b{i}" for i in range(30)]
    for i, s in enumerate(subjects):
        if i % 2 == 0:
            env.append(grant(s, "analytics"))
        if i % 3 == 0:
            env.append(grant(s, "partner_sharing", "client-01"))
    router = env.start_router(consent_wait=2.0)
    stream = Stream(env, subjects, every=0.02)
    stream.start()
    outage = scale(5.0, 15.0)
    restarts: list[str] = []
    try:
        for how in ("SIGTERM", "SIGKILL"):
            time.sleep(3.0)
            if how == "SIGTERM":
                own_broker.stop()
            else:
                _kill_broker(own_broker)
            time.sleep(outage)
            own_broker.start(timeout=180)
            time.sleep(8.0)  # clients reconnect; a router that gave up has exited by now
            router = _survivor(env, router, restarts)
        # consent changes after the restarts still reach the router
        withdrawn = subjects[0]
        env.consents.consent(withdrawn, "WITHDRAW", "analytics")
        time.sleep(2.0)
    finally:
        sent = stream.stop()
    router = _survivor(env, router, restarts)
    if env.start_fold().proc.poll() is not None:
        pytest.fail("the consent fold is not running")
    decisions = Counter(
        str(env.serde.decode(m.value()).value["event_id"])
        for m in env.read(env.decisions, expected=len(sent), timeout=240)
    )
    missing = set(sent) - set(decisions)
    duplicated = [e for e, n in decisions.items() if n > 1]
    by_event = env.decisions_by_event(len(sent), timeout=60)
    # not denying everything: consented subjects' last events are allowed
    last = {s: max((t, e) for e, (s2, t) in sent.items() if s2 == s)[1] for s in subjects}
    allowed_after = [s for i, s in enumerate(subjects[1:], 1) if i % 2 == 0]
    denied_wrongly = [s for s in allowed_after if by_event[last[s]]["analytics"] != "allowed"]
    report = audit(env)
    write_report(
        "broker_restart",
        outage_seconds=outage,
        events=len(sent),
        router_restarts=restarts,
        missing=len(missing),
        duplicates=len(duplicated),
        wrongly_denied_after_restart=denied_wrongly,
        audit=report.verdict,
    )
    assert not missing, f"{len(missing)} events without a decision"
    assert not duplicated, f"{len(duplicated)} events decided twice"
    assert not denied_wrongly, f"consented subjects denied after the restarts: {denied_wrongly}"
    assert by_event[last[withdrawn]]["analytics"] != "allowed"
    assert report.ok, report.render()
    env.stop_all()


def test_a_full_disk_stops_the_router_cleanly_and_nothing_is_lost_once_there_is_room(
    small_disk_broker: tuple[LocalBroker, Path, str], tmp_path: Path
) -> None:
    """Before the fix the router sat in send_offsets_to_transaction, silent, for as long as
    the broker was gone (librdkafka does not keep that call's timeout while the coordinator
    is unreachable), and then retried 10 x 30 s; now it stops (exit 70) within 4
    transaction timeouts, or its stall guard stops it."""
    broker, data, file_system = small_disk_broker
    env = _env(broker, tmp_path, "full")
    subjects = [f"f{i}" for i in range(20)]
    for i, s in enumerate(subjects):
        if i % 2 == 0:
            env.append(grant(s, "analytics"))
        if i % 3 == 0:
            env.append(grant(s, "partner_sharing", "client-01"))
    router = env.start_router(
        consent_wait=2.0, extra=["--loop.transaction-timeout-ms", str(TXN_TIMEOUT_MS)]
    )
    stream = Stream(env, subjects, every=0.02)
    stream.start()
    time.sleep(5.0)
    filled = _fill(data)
    # Kafka stops a broker whose last log dir failed ("No space left on device")
    deadline = time.monotonic() + 120
    while broker.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    broker_log = broker.log_file.read_text(errors="replace")
    assert "No space left on device" in broker_log, broker.tail(40)
    assert broker.pid() is None, "the broker still runs on a full disk"
    stream.halt.set()  # no more events; those queued are sent once the broker is back
    # the router: fail-stop with a clear error, nothing committed (there is no broker)
    stopped_at = time.monotonic()
    code = router.proc.wait(300)
    stop_seconds = time.monotonic() - stopped_at
    log = router.log.read_text()
    assert code == EXIT_FATAL, f"router exit {code}:\n{log[-3000:]}"
    assert "router stops without committing" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    # room again: the broker recovers its logs, the router resumes from its committed offsets
    (data / "filler").unlink()
    broker.start(timeout=180)
    sent = stream.stop()
    router = env.start_router(consent_wait=2.0)
    if env.start_fold().proc.poll() is not None:
        pytest.fail("the consent fold is not running")
    withdrawn = subjects[0]
    env.consents.consent(withdrawn, "WITHDRAW", "analytics")
    after = env.browse(withdrawn, 3)
    decisions = Counter(
        str(env.serde.decode(m.value()).value["event_id"])
        for m in env.read(env.decisions, expected=len(sent) + len(after), timeout=240)
    )
    missing = (set(sent) | set(after)) - set(decisions)
    duplicated = [e for e, n in decisions.items() if n > 1]
    by_event = env.decisions_by_event(len(sent) + len(after), timeout=60)
    report = audit(env)
    write_report(
        "disk_full",
        file_system=f"{file_system}, {SMALL_DISK_MIB} MiB",
        filled_bytes=filled,
        events=len(sent) + len(after),
        router_exit=code,
        router_stopped_after_broker_seconds=round(stop_seconds, 1),
        router_last_log=log.strip().splitlines()[-1][-300:],
        missing=len(missing),
        duplicates=len(duplicated),
        audit=report.verdict,
    )
    assert not missing, f"{len(missing)} events without a decision"
    assert not duplicated, f"{len(duplicated)} events decided twice"
    assert all(by_event[e]["analytics"] != "allowed" for e in after)
    assert report.ok, report.render()
    env.stop_all()


def test_a_topic_deleted_under_a_running_router_stops_it_with_nothing_committed_past_input(
    own_broker: LocalBroker, tmp_path: Path
) -> None:
    env = _env(own_broker, tmp_path, "deleted")
    env.append(grant("d0", "analytics"))
    env.append(grant("d0", "partner_sharing", "client-01"))
    router = env.start_router(consent_wait=2.0)
    first = env.browse("d0", 20)
    env.decisions_by_event(20)
    topic = env.plan.partner_topic("client-01")
    env.admin.delete_topics([topic], operation_timeout=30)[topic].result(30)
    later = env.browse("d0", 20)
    code = router.proc.wait(120)
    log = router.log.read_text()
    assert code == EXIT_FATAL, log[-3000:]
    assert f"topics deleted under the running router: {topic}" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    decided = env.decisions_by_event(20)
    assert set(first) <= set(decided)
    assert not (set(later) & set(decided)), "decisions committed for events after the deletion"
    write_report("topic_deleted", exit_code=code, last_log=log.strip().splitlines()[-1][-300:])
    env.stop_all()
