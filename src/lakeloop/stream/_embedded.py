"""The embedded backend: a stream is a folder of segment files inside the lake.

::

    <lake>/namespaces/_streams/streams/<name>/
        segments/*.seg          the log (see ``_log``)
        write.lock              publishers' lock
        groups/<group>.json     a consumer group's state, replaced atomically
        groups/<group>.lock     taken (flock) for every consume and ack of the group

A group's state is ``next`` (the first event never delivered to it) and ``pending``
(delivered, not yet acknowledged: offset -> consumer, deadline, deliveries). Everything
below ``min(pending, next)`` is acknowledged: that is the group's committed offset.
Consume and ack rewrite the state under the group's lock and fsync it (per the ``sync``
setting) before they return, so a committed offset survives a crash, and an event
whose consumer died is delivered again once its deadline passes — from any process.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lakeloop.errors import InvalidInput, StoreError
from lakeloop.stream._base import (
    Message,
    Stream,
    check_consume_args,
    check_group_name,
    check_offsets,
    check_stream_name,
    encode_events,
)
from lakeloop.stream._log import Log

__all__ = ["EmbeddedStream", "list_embedded", "streams_root"]

INTERNAL_NS = "_streams"
# how often a blocked consume re-reads its group even if no event came (for redeliveries)
_GROUP_RECHECK = 0.1


def streams_root(lake: Any) -> Path:
    """The folder holding a lake's embedded streams (inside its reserved namespace)."""
    if not hasattr(lake, "internal_namespace") or not hasattr(lake, "root"):
        raise InvalidInput(
            "the embedded stream backend needs a local lake",
            op="open stream",
            target=str(lake),
            hint="open the lake by its folder, or use a redis:// or nats:// stream_url",
        )
    ns = lake.internal_namespace(INTERNAL_NS)
    return Path(ns.root) / "streams"


def list_embedded(lake: Any) -> list[str]:
    root = streams_root(lake)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "segments").is_dir())


def _parse_offset(text: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise ValueError(text)
    return int(text)


def _write_state(path: Path, state: dict[str, Any], sync: bool) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(state, f, separators=(",", ":"))
        f.flush()
        if sync:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Group:
    """One consumer group's durable state, changed only under its flock."""

    def __init__(self, folder: Path, name: str, sync: bool) -> None:
        self.path = folder / f"{name}.json"
        self.sync = sync
        folder.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._mu = threading.Lock()  # flock does not exclude threads sharing the fd

    def __enter__(self) -> _Group:
        self._mu.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._mu.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._mu.release()

    def load(self, start: int) -> dict[str, Any]:
        try:
            with open(self.path) as f:
                state: dict[str, Any] = json.load(f)
        except FileNotFoundError:
            return {"next": start, "pending": {}}
        except ValueError:
            raise StoreError(
                "the consumer group's state file is unreadable",
                op="consume",
                target=str(self.path),
                hint="delete it to restart the group from the start of the stream",
            ) from None
        return state

    def save(self, state: dict[str, Any]) -> None:
        _write_state(self.path, state, self.sync)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class EmbeddedStream(Stream):
    """A stream in the lake's ``_streams`` namespace; no server, safe across processes."""

    backend = "embedded"

    def __init__(self, lake: Any, name: str) -> None:
        super().__init__(check_stream_name(name))
        settings = lake.settings
        self.folder = streams_root(lake) / name
        self._sync = str(settings.for_namespace(INTERNAL_NS, "sync"))
        self._sync_interval = float(settings["sync_interval"])
        self._ack_timeout = float(settings["stream_ack_timeout"])
        self._max_bytes = int(settings["stream_max_event_bytes"])
        self._poll = max(float(settings["stream_poll_interval"]), 0.0005)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._log = Log(str(self.folder), name, int(settings["stream_segment_size"]), self._sync)
        self._groups: dict[str, _Group] = {}
        self._groups_mu = threading.Lock()
        self._closed = False

    def _check_open(self, op: str) -> None:
        if self._closed:
            raise InvalidInput("the stream is closed", op=op, target=self.name)

    # ---------------------------------------------------------------- publishing
    def publish_many(
        self, events: Sequence[dict[str, Any]], *, ids: Sequence[str | None] | None = None
    ) -> list[str]:
        self._check_open("publish")
        encoded = encode_events(self.name, events, ids, self._max_bytes)
        if not encoded:
            return []
        first = self._log.append(encoded, time.time_ns(), self._sync_interval)
        return [str(first + i) for i in range(len(encoded))]

    # ---------------------------------------------------------------- consuming
    def _group(self, group: str) -> _Group:
        with self._groups_mu:
            g = self._groups.get(group)
            if g is None:
                g = _Group(self.folder / "groups", group, self._sync != "none")
                self._groups[group] = g
            return g

    def consume(
        self, group: str, consumer: str, max: int = 100, block: float = 0.0
    ) -> list[Message]:
        self._check_open("consume")
        check_consume_args(self.name, group, consumer, max, block)
        deadline = time.monotonic() + float(block)
        while True:
            seen = self._log.signature()
            msgs = self._consume_once(group, consumer, max)
            if msgs or time.monotonic() >= deadline:
                return msgs
            recheck = min(deadline, time.monotonic() + _GROUP_RECHECK)
            while time.monotonic() < recheck and self._log.signature() == seen:
                time.sleep(min(self._poll, max_wait(recheck)))

    def _consume_once(self, group: str, consumer: str, limit: int) -> list[Message]:
        self._log.refresh()
        now = time.time()
        with self._group(group) as g:
            state = g.load(self._log.first_seq())
            pending: dict[str, list[Any]] = state["pending"]
            expired = sorted(
                (int(k) for k, (_, deadline, _) in pending.items() if deadline <= now)
            )[:limit]
            out: list[Message] = []
            if expired:
                found = self._log.get(expired)
                for seq in expired:
                    if seq not in found:  # gone from the log: nothing to deliver
                        del pending[str(seq)]
                        continue
                    deliveries = int(pending[str(seq)][2]) + 1
                    out.append(self._message(seq, *found[seq], deliveries))
            if len(out) < limit:
                fresh = self._log.read(int(state["next"]), limit - len(out))
                for seq, event_id, ts_ns, data in fresh:
                    out.append(self._message(seq, event_id, ts_ns, data, 1))
                if fresh:
                    state["next"] = fresh[-1][0] + 1
            if not out:
                return out
            until = now + self._ack_timeout
            for m in out:
                pending[m.offset] = [consumer, until, m.deliveries]
            g.save(state)
        return out

    @staticmethod
    def _message(seq: int, event_id: str, ts_ns: int, data: bytes, deliveries: int) -> Message:
        return Message(str(seq), event_id, ts_ns / 1e9, json.loads(data), deliveries)

    def ack(self, group: str, offsets: Sequence[str]) -> int:
        self._check_open("ack")
        check_group_name(group)
        seqs = check_offsets(self.name, offsets, _parse_offset)
        if not seqs:
            return 0
        with self._group(group) as g:
            state = g.load(self._log.first_seq())
            pending = state["pending"]
            done = 0
            for seq in seqs:
                if pending.pop(str(seq), None) is not None:
                    done += 1
            if done:
                g.save(state)
        return done

    # ---------------------------------------------------------------- replay and info
    def replay(self, from_offset: str | None = None) -> Iterator[Message]:
        self._check_open("replay")
        start = 0
        if from_offset is not None:
            start = check_offsets(self.name, [from_offset], _parse_offset)[0] + 1
        self._log.refresh()
        end = self._log.end_seq()
        while start < end:
            batch = self._log.read(start, min(1000, end - start))
            if not batch:
                return
            for seq, event_id, ts_ns, data in batch:
                if seq >= end:
                    return
                yield self._message(seq, event_id, ts_ns, data, 0)
            start = batch[-1][0] + 1

    def info(self) -> dict[str, Any]:
        self._check_open("info")
        self._log.refresh()
        first, end = self._log.first_seq(), self._log.end_seq()
        groups: dict[str, Any] = {}
        folder = self.folder / "groups"
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            with self._group(path.stem) as g:
                state = g.load(first)
            pending = [int(k) for k in state["pending"]]
            committed = min([*pending, int(state["next"])])
            groups[path.stem] = {
                "committed": committed,  # every offset below it is acknowledged
                "pending": len(pending),
                "lag": end - int(state["next"]),
            }
        return {
            "name": self.name,
            "backend": self.backend,
            "length": end - first,
            "first_offset": str(first) if end > first else None,
            "last_offset": str(end - 1) if end > first else None,
            "segments": self._log.segment_count(),
            "bytes": self._log.size_bytes(),
            "groups": groups,
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._log.close()
        for g in self._groups.values():
            g.close()


def max_wait(until: float) -> float:
    return max(until - time.monotonic(), 0.0)
