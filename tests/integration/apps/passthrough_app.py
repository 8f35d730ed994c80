"""A minimal faust-streaming app for the smoke test: copy IN_TOPIC to OUT_TOPIC."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import faust

app = faust.App(
    os.environ["APP_ID"],
    broker=f"kafka://{os.environ['BOOTSTRAP']}",
    value_serializer="raw",
    key_serializer="raw",
    topic_partitions=int(os.environ.get("PARTITIONS", "1")),
    web_enabled=False,
    datadir=os.environ["DATADIR"],
    consumer_auto_offset_reset="earliest",
)
source = app.topic(os.environ["IN_TOPIC"], key_serializer="raw", value_serializer="raw")
sink = app.topic(os.environ["OUT_TOPIC"], key_serializer="raw", value_serializer="raw")


@app.agent(source, concurrency=1)
async def copy(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
    async for event in stream.events():
        await sink.send(key=event.key, value=event.value)
        yield None
