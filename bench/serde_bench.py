"""Serde cost per record (µs) for BrowsingEvent: encode and decode, several ways.

    .venv/bin/python bench/serde_bench.py [--records 20000] [--repeat 5]

Rows:
- single-object, Serde facade: consentgate's embedded format (fastavro + C3 01 framing),
  through ``Serde.encode(dict, name)`` / ``Serde.decode``;
- single-object, Serde + pydantic: the same with ``encode(model)`` / ``decode_model``
  (what the router pays when it validates at the edge; models are built before timing);
- Confluent wire, Serde facade: ``Serde`` with a ``mock://`` registry;
- Confluent wire, confluent-kafka serdes: ``AvroSerializer`` / ``AvroDeserializer`` called
  directly (mock registry), i.e. without consentgate's checks;
- fastavro schemaless, no framing: the floor;
- avro package: ``avro.io.DatumWriter`` / ``DatumReader`` (pure Python), for comparison.

Each figure is the best of ``--repeat`` runs over ``--records`` distinct events. Results are
printed and written to bench/results/serde.md with the machine description.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import fastavro
from confluent_kafka.schema_registry import SchemaRegistryClient, record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from consentgate.models.events import BrowsingEvent
from consentgate.serde import SchemaRepository, Serde

RESULTS = Path(__file__).resolve().parent / "results" / "serde.md"
NAME = "dev.consentgate.v1.BrowsingEvent"
TYPES = ["PAGE_VIEW", "SEARCH", "JOB_VIEW", "COMPANY_VIEW", "BOOKMARK", "APPLY", "LOGIN"]


def events(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Realistic BrowsingEvents, as Avro dicts."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    out = []
    for i in range(count):
        kind = rng.choice(TYPES)
        out.append(
            {
                "event_id": uuid.UUID(int=rng.getrandbits(128), version=4),
                "subject_id": f"subject-{rng.randrange(1_000_000):07d}",
                "event_time": start + timedelta(milliseconds=i * 37),
                "session_id": f"sess-{rng.getrandbits(48):012x}",
                "event_type": kind,
                "page_url": f"https://jobs.example/{kind.lower()}/{rng.randrange(10**6)}",
                "job_id": f"job-{rng.randrange(10**5)}" if kind in ("JOB_VIEW", "APPLY") else None,
                "company_id": f"co-{rng.randrange(5000)}",
                "search_query": "data engineer tokyo remote" if kind == "SEARCH" else None,
                "referrer": "https://search.example/?q=jobs" if rng.random() < 0.3 else None,
                "device": {
                    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126",
                    "device_type": rng.choice(["desktop", "mobile"]),
                    "os": "linux",
                },
                "ip_address": f"203.0.113.{rng.randrange(256)}",
                "country": "JP",
                "gpc": rng.random() < 0.1,
            }
        )
    return out


def best_us(fn: Callable[[Any], Any], items: list[Any], repeat: int) -> float:
    """Best per-item time of ``fn`` over ``items``, in µs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


# (prepare the input outside the timing, encode it, decode the bytes)
Codec = tuple[Callable[[dict[str, Any]], Any], Callable[[Any], bytes], Callable[[bytes], Any]]


def same(value: dict[str, Any]) -> dict[str, Any]:
    return value


def codecs(repository: SchemaRepository) -> dict[str, Codec]:
    entry = repository.current(NAME)
    embedded = Serde(repository)
    registry = Serde(repository, registry=SchemaRegistryClient.new_client({"url": "mock://b"}))
    client = SchemaRegistryClient.new_client({"url": "mock://bench-direct"})
    ser = AvroSerializer(
        client, entry.text, conf={"subject.name.strategy": record_subject_name_strategy}
    )
    de = AvroDeserializer(client, entry.text)
    ctx = SerializationContext("events.browsing.raw.v1", MessageField.VALUE)
    avro_schema = avro.schema.parse(entry.text)
    writer, reader = avro.io.DatumWriter(avro_schema), avro.io.DatumReader(avro_schema)

    def avro_encode(value: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        writer.write({**value, "event_id": str(value["event_id"])}, avro.io.BinaryEncoder(buf))
        return buf.getvalue()

    def fastavro_encode(value: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, entry.parsed, value)
        return buf.getvalue()

    return {
        "single-object, Serde facade (fastavro)": (
            same,
            lambda v: embedded.encode(v, NAME),
            embedded.decode,
        ),
        "single-object, Serde + pydantic model": (
            BrowsingEvent.from_avro,
            embedded.encode,
            lambda raw: embedded.decode_model(raw, BrowsingEvent),
        ),
        "Confluent wire, Serde facade (mock registry)": (
            same,
            lambda v: registry.encode(v, NAME),
            registry.decode,
        ),
        "Confluent wire, confluent-kafka serdes direct": (
            same,
            lambda v: ser(v, ctx),
            lambda raw: de(raw, ctx),
        ),
        "fastavro schemaless, no framing (floor)": (
            same,
            fastavro_encode,
            lambda raw: fastavro.schemaless_reader(io.BytesIO(raw), entry.parsed, None),
        ),
        "avro package DatumWriter/DatumReader": (
            same,
            avro_encode,
            lambda raw: reader.read(avro.io.BinaryDecoder(io.BytesIO(raw))),
        ),
    }


def measure(records: int, repeat: int) -> list[tuple[str, float, float, int]]:
    data = events(records)
    rows = []
    for label, (prepare, encode, decode) in codecs(SchemaRepository.load()).items():
        inputs = [prepare(v) for v in data]
        encoded = [encode(v) for v in inputs]  # warm caches (registration, parsed schemas)
        decode(encoded[0])
        enc = best_us(encode, inputs, repeat)
        dec = best_us(decode, encoded, repeat)
        size = sum(map(len, encoded)) // records
        rows.append((label, enc, dec, size))
    return rows


def machine() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libs = ", ".join(f"{p} {version(p)}" for p in ("fastavro", "confluent-kafka", "avro"))
    return (
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}\n"
        f"- CPU: {cpu}; nproc: {len(os.sched_getaffinity(0))}\n"
        f"- Python {platform.python_version()} ({platform.python_implementation()}), {libs}\n"
    )


def report(rows: list[tuple[str, float, float, int]], records: int, repeat: int) -> str:
    lines = [
        "# Serde benchmark: BrowsingEvent encode/decode cost per record",
        "",
        machine(),
        f"`{' '.join([Path(sys.executable).name, *sys.argv])}`: {records} distinct events, "
        f"best of {repeat} runs.",
        "",
        "| path | encode µs/record | decode µs/record | bytes/record |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {label} | {enc:.2f} | {dec:.2f} | {size} |" for label, enc, dec, size in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    text = report(measure(args.records, args.repeat), args.records, args.repeat)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
