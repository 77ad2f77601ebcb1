"""Event streams: an append-only log of JSON events with consumer groups.

::

    from lakeloop.stream import open_stream

    with open_stream(lake, "feedback") as s:          # backend from the lake's settings
        off = s.publish({"prediction_id": "p1", "label": 3}, id="evt-1")  # durable
        for m in s.consume("joiner", "c1", max=500, block=1.0):
            ...                                         # idempotent on m.id
        s.ack("joiner", [m.offset for m in msgs])
        for m in s.replay(): ...                        # everything, ignoring groups

Backends: ``embedded`` (segment files in the lake; the default, no server), ``redis``
(Redis Streams) and ``nats`` (NATS JetStream), chosen by ``stream_url``. Delivery is at
least once: a consumer that writes must be idempotent on ``Message.id``. See
docs/stream.md.
"""

from __future__ import annotations

from lakeloop.errors import StreamError
from lakeloop.stream._base import Message, Stream, check_stream_name
from lakeloop.stream._open import list_streams, open_stream

__all__ = [
    "Message",
    "Stream",
    "StreamError",
    "check_stream_name",
    "list_streams",
    "open_stream",
]
