"""Two fold replicas, killed with SIGKILL over and over while changes stream in: no change
is lost and none is applied twice (faust's own peer lost or duplicated records on every
rebalance; the fold must not)."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import defaultdict

import pytest

from consentgate.consent.changelog import ChangeLog
from consentgate.consent.timeline import Timeline
from consentgate.models.consent import ConsentTimeline
from tests.integration import faults
from tests.integration.conftest import ConsentEnvFactory
from tests.integration.consent_harness import FoldProcess
from tests.integration.faults import write_report
from tests.kafka_helpers import consume_all

pytestmark = [pytest.mark.integration, pytest.mark.faults, faults.TIMEOUT]

SUBJECTS = 2_000
CHANGES = 24_000
KILLS = 8


def test_two_fold_replicas_killed_nine_times_lose_and_repeat_nothing(
    consent_env_factory: ConsentEnvFactory,
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"seed {seed}")
    env = consent_env_factory(partitions=6)
    folds: dict[str, FoldProcess] = {
        name: env.start_fold(instance_id=name) for name in ("fold-a", "fold-b")
    }
    expected: dict[str, set[str]] = defaultdict(set)
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        log = ChangeLog(env.kafka, env.changes, env.serde)
        try:
            keys = [("analytics", None), ("partner_sharing", "client-01"), ("profiling", None)]
            for i in range(CHANGES):
                subject = f"k{rng.randrange(SUBJECTS)}"
                purpose, recipient = keys[i % 3]
                change = env.request(
                    subject_id=subject,
                    action="GRANT" if rng.random() < 0.6 else "WITHDRAW",
                    purpose=purpose,
                    recipient=recipient,
                    change_id=f"c{i}",
                )
                log.submit(change)
                expected[subject].add(change.change_id)
                if i % 500 == 499:
                    log.append([])  # pace: ~0.1 s per 500 changes
                    time.sleep(0.1)
            log.close()
        except BaseException as exc:  # noqa: BLE001  # reported by the test thread
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    kills = 0
    while not done.is_set() or kills < KILLS:
        time.sleep(rng.uniform(1.0, 3.0))
        name = rng.choice(sorted(folds))
        folds[name].stop(signal.SIGKILL)
        kills += 1
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0.0, 2.0))  # sometimes down a while: a rebalance
        folds[name] = env.start_fold(instance_id=name, wait_ready=False)
    writer.join(120)
    assert not errors, errors
    total = sum(len(ids) for ids in expected.values())
    assert total == CHANGES

    deadline = time.monotonic() + 180
    missing: dict[str, set[str]] = {}
    versions: dict[str, int] = {}
    while time.monotonic() < deadline:
        latest: dict[str, Timeline] = {}
        for msg in consume_all(env.bootstrap, env.state, timeout=30):
            record = env.serde.decode_model(msg.value(), ConsentTimeline)
            latest[record.subject_id] = Timeline(record)
        missing = {
            s: ids - {c.change_id for c in latest[s].record.changes} if s in latest else ids
            for s, ids in expected.items()
        }
        missing = {s: ids for s, ids in missing.items() if ids}
        versions = {s: t.version for s, t in latest.items()}
        if not missing:
            break
        time.sleep(2)
    assert not missing, f"seed {seed}: {sum(map(len, missing.values()))} changes not in state"
    twice = {s: (versions[s], len(ids)) for s, ids in expected.items() if versions[s] != len(ids)}
    assert not twice, f"seed {seed}: applied more than once: {list(twice.items())[:5]}"
    assert consume_all(env.bootstrap, env.dlq, timeout=5) == []
    alive = [f for f in folds.values() if f.proc.poll() is None]
    assert len(alive) == 2, "\n".join(f.tail(20) for f in folds.values())
    print(f"seed {seed}: {kills} kills, {CHANGES} changes over {len(expected)} subjects")
    write_report(
        "fold_kill_9",
        seed=seed,
        kills=kills,
        changes=CHANGES,
        subjects=len(expected),
        lost=0,
        applied_twice=0,
    )
