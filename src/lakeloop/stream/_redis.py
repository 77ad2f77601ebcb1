"""The Redis backend: one Redis Stream per stream, consumer groups as Redis has them.

::

    key  <stream_prefix>:stream:<name>        entries {"i": event id, "t": time, "d": JSON}
    publish        XADD (publish_many: one MULTI/EXEC pipeline, so a batch is atomic)
    consume        XAUTOCLAIM entries idle longer than stream_ack_timeout (redelivery),
                   then XREADGROUP ">" for new ones; XGROUP CREATE ... 0 MKSTREAM first
    ack            XACK
    replay         XRANGE, paged, up to the last entry at the time of the call

Offsets are Redis entry ids (``1700000000000-0``). Durability is the server's: a publish
returns once Redis applied it; with ``appendonly yes`` and ``appendfsync always`` (how
the tests run it) that means fsynced. The ``redis`` package is imported only here.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from lakeloop.errors import StreamError
from lakeloop.settings import Settings
from lakeloop.stream._base import (
    Message,
    Stream,
    check_consume_args,
    check_group_name,
    check_offsets,
    check_stream_name,
    encode_events,
)

__all__ = ["RedisStream", "list_redis"]

_OFFSET = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
_PAGE = 1000
T = TypeVar("T")


def _parse_offset(text: str) -> str:
    if not _OFFSET.fullmatch(text):
        raise ValueError(text)
    return text


def _client(url: str) -> Any:
    import redis

    try:
        return redis.Redis.from_url(url, socket_connect_timeout=5, decode_responses=False)
    except ValueError as exc:
        from lakeloop.errors import InvalidInput

        raise InvalidInput(f"bad Redis URL: {exc}", op="open stream", target=url) from None


def _guard(op: str, target: str, call: Callable[[], T]) -> T:
    """Run one Redis call; its failures become ``StreamError`` naming op and target."""
    import redis

    try:
        return call()
    except redis.exceptions.RedisError as exc:
        raise StreamError(f"redis: {exc}", op=op, target=target) from None


def list_redis(url: str, settings: Settings) -> list[str]:
    client = _client(url)
    head = f"{settings['stream_prefix']}:stream:".encode()
    try:
        keys = _guard(
            "list streams",
            url,
            lambda: list(client.scan_iter(match=head + b"*", count=1000, _type="stream")),
        )
    finally:
        client.close()
    return sorted(k[len(head) :].decode() for k in keys)


class RedisStream(Stream):
    """A stream as a Redis Stream; groups are Redis consumer groups."""

    backend = "redis"

    def __init__(self, url: str, name: str, settings: Settings) -> None:
        super().__init__(check_stream_name(name))
        self.url = url
        self.key = f"{settings['stream_prefix']}:stream:{name}"
        self._ack_ms = max(int(float(settings["stream_ack_timeout"]) * 1000), 1)
        self._claim_cursor: dict[str, str] = {}  # per group: where the next XAUTOCLAIM starts
        self._max_bytes = int(settings["stream_max_event_bytes"])
        self._client = _client(url)
        self._groups: set[str] = set()
        _guard("open stream", self._where, self._client.ping)

    @property
    def _where(self) -> str:
        return f"{self.url} {self.key}"

    def publish_many(
        self, events: Sequence[dict[str, Any]], *, ids: Sequence[str | None] | None = None
    ) -> list[str]:
        encoded = encode_events(self.name, events, ids, self._max_bytes)
        if not encoded:
            return []
        now = repr(time.time()).encode()
        pipe = self._client.pipeline(transaction=True)
        for event_id, data in encoded:
            pipe.xadd(self.key, {b"i": event_id.encode(), b"t": now, b"d": data})
        offsets = _guard("publish", self._where, pipe.execute)
        return [o.decode() for o in offsets]

    def _ensure_group(self, group: str) -> None:
        if group in self._groups:
            return
        import redis

        try:
            self._client.xgroup_create(self.key, group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise StreamError(f"redis: {exc}", op="consume", target=self._where) from None
        except redis.exceptions.RedisError as exc:
            raise StreamError(f"redis: {exc}", op="consume", target=self._where) from None
        self._groups.add(group)

    @staticmethod
    def _message(entry_id: bytes, fields: dict[bytes, bytes], deliveries: int) -> Message:
        return Message(
            entry_id.decode(),
            fields[b"i"].decode(),
            float(fields[b"t"]),
            json.loads(fields[b"d"]),
            deliveries,
        )

    def consume(
        self, group: str, consumer: str, max: int = 100, block: float = 0.0
    ) -> list[Message]:
        check_consume_args(self.name, group, consumer, max, block)
        self._ensure_group(group)
        out = self._reclaim(group, consumer, max)
        if len(out) >= max:
            return out
        wait = None if out or block <= 0 else max_ms(block)
        reply = _guard(
            "consume",
            self._where,
            lambda: self._client.xreadgroup(
                group, consumer, {self.key: ">"}, count=max - len(out), block=wait
            ),
        )
        for _, entries in reply or []:
            out += [self._message(eid, fields, 1) for eid, fields in entries if fields]
        return out

    def _reclaim(self, group: str, consumer: str, limit: int) -> list[Message]:
        """Entries of the group idle past the ack timeout, now claimed by *consumer*."""
        # Redis looks at about 10 x COUNT pending entries per call: go on from where the
        # last call stopped (it hands back a cursor, "0-0" once it wrapped), so idle
        # entries far down the list are reached too
        start = self._claim_cursor.get(group, "0-0")
        reply = _guard(
            "consume",
            self._where,
            lambda: self._client.xautoclaim(
                self.key, group, consumer, min_idle_time=self._ack_ms, start_id=start, count=limit
            ),
        )
        cursor = reply[0]
        self._claim_cursor[group] = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        entries = [(eid, fields) for eid, fields in reply[1] if fields]
        if not entries:
            return []
        counts = {
            p["message_id"]: int(p["times_delivered"])
            for p in _guard(
                "consume",
                self._where,
                lambda: self._client.xpending_range(
                    self.key,
                    group,
                    min=entries[0][0],
                    max=entries[-1][0],
                    count=len(entries) + 100,
                    consumername=consumer,
                ),
            )
        }
        return [self._message(eid, f, counts.get(eid, 2)) for eid, f in entries]

    def ack(self, group: str, offsets: Sequence[str]) -> int:
        check_group_name(group)
        parsed = check_offsets(self.name, offsets, _parse_offset)
        if not parsed:
            return 0
        return int(_guard("ack", self._where, lambda: self._client.xack(self.key, group, *parsed)))

    def replay(self, from_offset: str | None = None) -> Iterator[Message]:
        start = "-"
        if from_offset is not None:
            start = "(" + check_offsets(self.name, [from_offset], _parse_offset)[0]
        last = _guard(
            "replay", self._where, lambda: self._client.xrevrange(self.key, "+", "-", count=1)
        )
        if not last:
            return
        end = last[0][0]
        while True:
            page = _guard(
                "replay",
                self._where,
                lambda lo=start: self._client.xrange(self.key, lo, end, count=_PAGE),  # type: ignore[misc]
            )
            for eid, fields in page:
                yield self._message(eid, fields, 0)
            if len(page) < _PAGE:
                return
            start = "(" + page[-1][0].decode()

    def info(self) -> dict[str, Any]:
        import redis

        try:
            raw = self._client.xinfo_stream(self.key)
            groups_raw = self._client.xinfo_groups(self.key)
        except redis.exceptions.ResponseError:  # no such key yet: an empty stream
            raw, groups_raw = {"length": 0}, []
        except redis.exceptions.RedisError as exc:
            raise StreamError(f"redis: {exc}", op="info", target=self._where) from None
        first, last = raw.get("first-entry"), raw.get("last-entry")
        groups = {
            g["name"].decode(): {"pending": int(g["pending"]), "lag": g.get("lag")}
            for g in groups_raw
        }
        return {
            "name": self.name,
            "backend": self.backend,
            "length": int(raw["length"]),
            "first_offset": first[0].decode() if first else None,
            "last_offset": last[0].decode() if last else None,
            "key": self.key,
            "groups": groups,
        }

    def close(self) -> None:
        self._client.close()


def max_ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)
