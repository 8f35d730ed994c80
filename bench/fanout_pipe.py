"""A raw confluent-kafka pipe with the router's fan-out: the floor for a Python process here.

    python bench/fanout_pipe.py --bootstrap B --raw T --group G --decisions T \
        --sinks T1,T2,... --fanout 4.6 [--decision-bytes 900] [--sink-bytes 200] \
        [--transactional ID] [--commit-interval 0.1]

Consumes ``--raw`` (group ``--group``, read_committed, from the earliest offset) and, per
event, produces ``--fanout`` records on average (fractional part spread evenly): one to
``--decisions`` (key = the raw key) and the rest to ``--sinks`` (the first sink, then others
chosen by the key), values of the given sizes, murmur2 partitioner. No decoding, no
deciding: the I/O part of the router's work, done by librdkafka.

``--transactional ID``: one transactional producer, outputs and input offsets committed
atomically every ``--commit-interval`` s (``send_offsets_to_transaction`` with the consumer's
group metadata). Without it: an idempotent producer, offsets committed asynchronously every
interval. Runs until SIGTERM/SIGINT, then commits what it did and prints one JSON line.
Run by bench/router_v2_bench.py as a subprocess (so that its CPU time is its own).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import zlib

from confluent_kafka import Consumer, KafkaException, Producer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--raw", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--decisions", required=True)
    p.add_argument("--sinks", required=True, help="comma-separated sink topics")
    p.add_argument("--fanout", type=float, required=True, help="records per event, >= 1")
    p.add_argument("--decision-bytes", type=int, default=900)
    p.add_argument("--sink-bytes", type=int, default=200)
    p.add_argument("--transactional", metavar="ID", help="transactional.id (else idempotent)")
    p.add_argument("--commit-interval", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=2000)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 - one straight loop
    args = parse_args(argv)
    sinks = args.sinks.split(",")
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    common = {"bootstrap.servers": args.bootstrap}
    producer_conf = {
        **common,
        "partitioner": "murmur2_random",
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 524_288,
    }
    txn = args.transactional is not None
    if txn:
        producer_conf.update(
            {
                "transactional.id": args.transactional,
                "transaction.timeout.ms": 30_000,
                "retry.backoff.ms": 10,
                "retry.backoff.max.ms": 100,
            }
        )
    producer = Producer(producer_conf)
    consumer = Consumer(
        {
            **common,
            "group.id": args.group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range",
        }
    )
    decision_value = bytes(args.decision_bytes)
    sink_value = bytes(args.sink_bytes)
    extra = args.fanout - 1.0
    produce = producer.produce
    if txn:
        producer.init_transactions(60)
        producer.begin_transaction()
    consumer.subscribe([args.raw])
    events = records = commits = 0
    acc = 0.0
    last_commit = time.monotonic()

    def commit() -> None:
        nonlocal commits, last_commit
        assignment = consumer.assignment()
        positions = [tp for tp in consumer.position(assignment) if tp.offset >= 0]
        if txn:
            if positions:
                producer.send_offsets_to_transaction(
                    positions, consumer.consumer_group_metadata(), 30
                )
            producer.commit_transaction(30)
            producer.begin_transaction()
        elif positions:
            producer.poll(0)
            consumer.commit(offsets=positions, asynchronous=True)
        commits += 1
        last_commit = time.monotonic()

    def send(topic: str, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                produce(topic, value, key)
                return
            except BufferError:
                producer.poll(0.01)

    try:
        while not stopping:
            batch = consumer.consume(args.batch, 0.05)
            for msg in batch:
                if msg.error() is not None:
                    continue
                key = msg.key()
                send(args.decisions, key, decision_value)
                acc += extra
                n = int(acc)
                acc -= n
                if n:
                    h = zlib.crc32(key or b"")
                    send(sinks[0], key, sink_value)
                    for j in range(1, n):
                        send(sinks[1 + (h + j) % (len(sinks) - 1)], key, sink_value)
                records += 1 + n
                events += 1
            producer.poll(0)
            if time.monotonic() - last_commit >= args.commit_interval:
                commit()
        commit()
        left = producer.flush(60)
    except KafkaException as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 70
    finally:
        consumer.close()
    print(
        json.dumps(
            {
                "events": events,
                "records": records,
                "commits": commits,
                "unflushed": left,
                "transactional": txn,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
