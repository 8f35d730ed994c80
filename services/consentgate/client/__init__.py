"""A typed Python client for consumers of consentgate's sink topics.

::

    from consentgate.client import Retraction, SinkConsumer, SinkMessage

    def store(msg: SinkMessage) -> None:      # upsert by msg.event_id
        ...

    def forget(r: Retraction) -> None:        # delete everything held under r.key
        ...

    with SinkConsumer("partner.acme.browsing.v1", "acme-loader",
                      config={"bootstrap.servers": "kafka:9092"},
                      on_record=store, on_retraction=forget) as consumer:
        consumer.run()                       # until consumer.stop()

read_committed is forced, offsets are committed only after the callbacks returned, and
re-delivered events are dropped by event id (bounded memory). See docs/consumers.md.
"""

from __future__ import annotations

from consentgate.client.consumer import SinkConsumer, consumer_config
from consentgate.client.dedup import EventMemory
from consentgate.client.messages import Retraction, SinkMessage, SinkRecord, Undecodable, classify

__all__ = [
    "EventMemory",
    "Retraction",
    "SinkConsumer",
    "SinkMessage",
    "SinkRecord",
    "Undecodable",
    "classify",
    "consumer_config",
]
