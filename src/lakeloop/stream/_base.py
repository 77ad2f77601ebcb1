"""The stream interface every backend implements, and the input checks they share.

A backend implements four primitives — ``publish_many``, ``consume``, ``ack``,
``replay`` — plus ``info`` and ``close``; ``publish`` and the context manager are built
on them here. The conformance suite (tests/test_stream_conformance.py) runs the same
cases against every backend.
"""

from __future__ import annotations

import json
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lakeloop.errors import InvalidInput, InvalidName

__all__ = [
    "Message",
    "Stream",
    "check_group_name",
    "check_stream_name",
    "encode_events",
]

_STREAM_NAME = re.compile(r"[a-z0-9-]{1,63}")
_GROUP_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")
MAX_ID_BYTES = 255


@dataclass(frozen=True)
class Message:
    """One event as a consumer sees it.

    ``offset`` is the backend's position (usable in ``Stream.replay``), ``id`` the event
    id (the publisher's or a generated uuid4 hex), ``time`` the publish time (epoch
    seconds), ``data`` the JSON object, ``deliveries`` how often this group got it (1 on
    the first delivery; 0 for ``replay``, which ignores groups).
    """

    offset: str
    id: str
    time: float
    data: dict[str, Any]
    deliveries: int


def check_stream_name(name: object) -> str:
    """A stream name is 1-63 characters of lowercase letters, digits and '-'."""
    if not isinstance(name, str) or not _STREAM_NAME.fullmatch(name):
        raise InvalidName(
            "not a valid stream name",
            op="open stream",
            target=repr(name),
            hint="stream names are 1-63 characters of lowercase letters, digits and '-'",
        )
    return name


def check_group_name(name: object, what: str = "group") -> str:
    """Group and consumer names: 1-63 letters, digits, '_' or '-'."""
    if not isinstance(name, str) or not _GROUP_NAME.fullmatch(name):
        raise InvalidName(
            f"not a valid {what} name",
            op="consume",
            target=repr(name),
            hint=f"{what} names are 1-63 letters, digits, '_' or '-'",
        )
    return name


def encode_events(
    stream: str,
    events: Sequence[object],
    ids: Sequence[object] | None,
    max_bytes: int,
) -> list[tuple[str, bytes]]:
    """Check a batch and encode it: -> [(id, compact JSON bytes)].

    Every event is checked before anything is written, so a bad one refuses the whole
    batch (``InvalidInput``) and the stream is unchanged.
    """
    if isinstance(events, (dict, str, bytes)) or not isinstance(events, Sequence):
        raise InvalidInput(
            "publish_many takes a list of events (JSON objects)", op="publish", target=stream
        )
    if ids is not None:
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
            raise InvalidInput("ids must be a list of strings", op="publish", target=stream)
        if len(ids) != len(events):
            raise InvalidInput(
                f"{len(ids)} ids for {len(events)} events", op="publish", target=stream
            )
    out: list[tuple[str, bytes]] = []
    for i, event in enumerate(events):
        where = f"{stream} event {i}"
        if not isinstance(event, dict):
            raise InvalidInput(
                f"an event is a JSON object (dict), not {type(event).__name__}",
                op="publish",
                target=where,
            )
        try:
            data = json.dumps(
                event, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"the event is not JSON-serialisable: {exc}",
                op="publish",
                target=where,
                hint="use str, int, float (finite), bool, None, lists and dicts with str keys",
            ) from None
        if len(data) > max_bytes:
            raise InvalidInput(
                f"the event is {len(data)} bytes as JSON, more than stream_max_event_bytes"
                f" ({max_bytes})",
                op="publish",
                target=where,
                hint="store large inputs in the lake and publish a reference to them",
            )
        event_id = uuid.uuid4().hex if ids is None or ids[i] is None else ids[i]
        if (
            not isinstance(event_id, str)
            or not event_id
            or len(event_id.encode()) > MAX_ID_BYTES
            or not event_id.isprintable()
        ):
            raise InvalidInput(
                f"bad event id {event_id!r}",
                op="publish",
                target=where,
                hint=f"ids are non-empty printable strings of at most {MAX_ID_BYTES} bytes",
            )
        out.append((event_id, data))
    return out


def check_offsets(stream: str, offsets: object, parse: Any) -> list[Any]:
    """Parse a list of offsets with *parse* (which raises ValueError on a bad one)."""
    if isinstance(offsets, (str, bytes)) or not isinstance(offsets, Sequence):
        raise InvalidInput("ack takes a list of offsets", op="ack", target=stream)
    parsed = []
    for off in offsets:
        try:
            if not isinstance(off, str):
                raise ValueError(off)
            parsed.append(parse(off))
        except ValueError:
            raise InvalidInput(
                f"not an offset of this stream: {off!r}",
                op="ack",
                target=stream,
                hint="pass Message.offset values as they came from consume",
            ) from None
    return parsed


def check_consume_args(
    stream: str, group: object, consumer: object, max: object, block: object
) -> None:
    """Validate consume's arguments (shared by every backend)."""
    check_group_name(group, "group")
    check_group_name(consumer, "consumer")
    if isinstance(max, bool) or not isinstance(max, int) or max < 1:
        raise InvalidInput("max must be a positive integer", op="consume", target=stream)
    if isinstance(block, bool) or not isinstance(block, (int, float)) or not block >= 0:
        raise InvalidInput("block must be seconds >= 0", op="consume", target=stream)


class Stream(ABC):
    """An append-only log of JSON events with consumer groups.

    Contract (every backend, checked by the conformance suite):

    - ``publish_many(events, ids=)`` appends the batch in order and returns its offsets
      only once it is durable (as the backend defines it: fsync for ``embedded``, the
      server's acknowledgement for ``redis``/``nats``). Bad input raises ``InvalidInput``
      before anything is written.
    - ``consume(group, consumer, max, block)`` delivers events to a group: each event
      goes to one consumer of the group; an event not acknowledged within
      ``stream_ack_timeout`` is delivered again (``deliveries`` counts). The group is
      created at the start of the stream if missing. ``block`` seconds are waited for
      at least one event; an empty list means none came.
    - ``ack(group, offsets)`` marks events processed; acked events are never delivered
      to the group again. Unknown or already acked offsets are ignored.
    - ``replay(from_offset)`` yields every event after *from_offset* (from the start
      when None) up to the end at the time of the call, ignoring groups.

    Delivery is at least once: consumers drop duplicates by ``Message.id``. A handle is
    safe to share between threads; open it once and keep it (opening reads the
    embedded log's last segment, or connects to the server).
    """

    backend: str = ""

    def __init__(self, name: str) -> None:
        self.name = name

    def publish(self, event: dict[str, Any], *, id: str | None = None) -> str:
        """Append one event; -> its offset, once durable."""
        return self.publish_many([event], ids=None if id is None else [id])[0]

    @abstractmethod
    def publish_many(
        self, events: Sequence[dict[str, Any]], *, ids: Sequence[str | None] | None = None
    ) -> list[str]:
        """Append a batch as one durable write; -> offsets in order."""

    @abstractmethod
    def consume(
        self, group: str, consumer: str, max: int = 100, block: float = 0.0
    ) -> list[Message]:
        """Up to *max* events for *consumer* of *group*, waiting up to *block* s."""

    @abstractmethod
    def ack(self, group: str, offsets: Sequence[str]) -> int:
        """Acknowledge processed events; -> how many were pending and are now acked."""

    @abstractmethod
    def replay(self, from_offset: str | None = None) -> Iterator[Message]:
        """Every event after *from_offset* (all when None), oldest first."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Length, first/last offset and per-group state (pending, lag), for people."""

    @abstractmethod
    def close(self) -> None:
        """Release the backend's resources (files, connections, threads); idempotent."""

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Stream {self.name!r} ({self.backend})>"
