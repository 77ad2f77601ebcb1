"""The embedded backend: a stream is a folder of segment files inside the lake.

::

    <lake>/namespaces/_streams/streams/<name>/
        segments/*.seg          the log (see ``_log``)
        write.lock              publishers' lock
        groups/<group>.state    a consumer group's state after its last consume
        groups/<group>.commit-N ... after its last acks (two copies; an ack overwrites the older)
        groups/<group>.lock     taken (flock) for every consume and ack of the group

A group's state is ``next`` (the first event never delivered to it) and ``pending``
(delivered, not yet acknowledged: offset -> consumer, deadline, deliveries). Everything
below ``min(pending, next)`` is acknowledged: that is the group's committed offset.
Consume and ack rewrite the state under the group's lock; an ack fsyncs it (per the
``sync`` setting) before it returns, so a committed offset survives a crash, and an
event whose consumer died is delivered again once its deadline passes — from any
process (see ``_Group``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from crc32c import crc32c

from lakeloop.errors import InvalidInput, StoreError
from lakeloop.store._fs import FileLayer, OSFileLayer
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

log = logging.getLogger("lakeloop.stream")

INTERNAL_NS = "_streams"
# how often a blocked consume re-reads its group even if no event came (for redeliveries)
_GROUP_RECHECK = 0.1


def streams_root(lake: Any) -> Path:
    """The folder holding a lake's embedded streams (inside its reserved namespace)."""
    if getattr(lake, "remote", False) or not hasattr(lake, "internal_namespace"):
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
    # ASCII digits only: str.isdigit() also takes other scripts' digits ("١٢")
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise ValueError(text)
    return int(text)


def _encode_state(state: dict[str, Any]) -> bytes:
    body = json.dumps(state, separators=(",", ":")).encode()
    return b"LLG1 %d %08x\n" % (len(body), crc32c(body)) + body


def _decode_state(raw: bytes) -> dict[str, Any] | None:
    """The state in *raw*, or None if it is torn or damaged (length and CRC checked)."""
    head, _, rest = raw.partition(b"\n")
    parts = head.split(b" ")
    if len(parts) != 3 or parts[0] != b"LLG1" or not parts[1].isdigit():
        return None
    body = rest[: int(parts[1])]
    if len(body) != int(parts[1]) or f"{crc32c(body):08x}".encode() != parts[2]:
        return None
    state: dict[str, Any] = json.loads(body)
    return state


def _overwrite(fs: FileLayer, path: str, data: bytes, *, sync: bool) -> bool:
    """Replace the content of the small file *path* (creating it); -> whether it was new.

    On the real file system this is a ``pwrite`` at 0 and a truncation to the new
    length: cutting the file to 0 first would make ext4 flush it on close (its
    ``auto_da_alloc``), a millisecond per consume. The file layer's interface only
    appends, so any other layer (the power-cut and fault layers of the tests) gets a
    truncation to 0 and an append, which it models like an overwrite: until the next
    fsync a power cut may bring the old content back.
    """
    if type(fs) is OSFileLayer:
        try:
            fd, created = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            fd, created = os.open(path, os.O_WRONLY), False
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            if sync:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        return created
    created = not os.path.exists(path)
    f = fs.create(path) if created else fs.open_append(path)
    try:
        if not created:
            f.truncate(0)
        f.write(data)
        if sync:
            f.sync()
    finally:
        f.close()
    return created


class _Group:
    """One consumer group's state, changed only under its flock.

    Three files, each with a generation number, a length and a CRC; a load takes the
    newest whole one. A consume overwrites ``<group>.state`` without fsync (a crash or
    power cut may tear it or take it back: the load then takes an older copy, which
    only delivers events again). An ack writes the state over the older of
    ``<group>.commit-0`` and ``-1`` and fsyncs it before it returns: one fsync, and a
    torn write leaves the newest commit whole.
    """

    def __init__(self, folder: Path, name: str, sync: bool, fs: FileLayer) -> None:
        self.folder = folder
        self.name = name
        self.sync = sync
        self.fs = fs
        folder.mkdir(parents=True, exist_ok=True)
        self._fd = self._open_lock()
        self._mu = threading.Lock()  # flock does not exclude threads sharing the fd
        self._commit_gens = [-1, -1]

    def _open_lock(self) -> int:
        return os.open(self.folder / f"{self.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)

    def _after_fork(self) -> None:
        """In a forked child: a lock and a lock file of its own (the flock of the
        inherited descriptor would be the parent's, and would not exclude it)."""
        self._mu = threading.Lock()
        if self._fd >= 0:
            os.close(self._fd)  # no unlock: that would release the parent's lock
            try:
                self._fd = self._open_lock()
            except OSError:  # (the group's folder is gone): its calls fail with EBADF
                self._fd = -1

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

    def _paths(self) -> list[Path]:
        return [
            self.folder / f"{self.name}{suffix}" for suffix in (".state", ".commit-0", ".commit-1")
        ]

    def load(self, start: int) -> dict[str, Any]:
        """The newest whole copy; the initial state if no ack ever wrote a commit.

        Only a commit copy with content and no whole copy at all is damage: a torn or
        empty ``.state`` alone (a crash in the group's first consume, even between
        creating the file and writing it) and an empty commit copy (a crash in the
        first ack, which then never returned) just mean nothing was acknowledged.
        """
        found, whole = False, []
        self._commit_gens = [-1, -1]  # generation in each commit copy (-1: none or torn)
        for i, path in enumerate(self._paths()):
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            found = found or (i > 0 and raw != b"")
            state = _decode_state(raw)
            if state is not None:
                whole.append(state)
                if i:
                    self._commit_gens[i - 1] = int(state["gen"])
        if whole:
            return max(whole, key=lambda st: int(st["gen"]))
        if found:
            raise StoreError(
                "every copy of the consumer group's state is damaged",
                op="consume",
                target=str(self.folder / self.name),
                hint="delete its files to restart the group from the start of the stream",
            )
        return {"gen": 0, "next": start, "pending": {}}

    def save(self, state: dict[str, Any], *, commit: bool, durable: bool = False) -> None:
        """*commit* (an ack): durable before it returns (under the sync policy, or
        always with *durable*); else (a consume) best effort."""
        state["gen"] = int(state["gen"]) + 1
        data = _encode_state(state)
        if not commit:
            self._write(self._paths()[0], data, sync=False)
        else:
            # overwrite the older copy: the newest durable commit stays whole meanwhile
            slot = 0 if self._commit_gens[0] <= self._commit_gens[1] else 1
            path = self._paths()[1 + slot]
            self._write(path, data, sync=self.sync or durable, durable=durable)
            self._commit_gens[slot] = int(state["gen"])

    def _write(self, path: Path, data: bytes, *, sync: bool, durable: bool = False) -> None:
        """Overwrite *path* in place: no rename (ext4 flushes a file renamed over another,
        which costs a consume milliseconds); a torn write fails its CRC and the load
        takes another copy. *durable*: make its name durable too, even if it existed."""
        created = _overwrite(self.fs, str(path), data, sync=sync)
        if (created and sync) or durable:  # the new name, and the groups folder's, must last
            self.fs.sync_dir(str(self.folder))
            self.fs.sync_dir(str(self.folder.parent))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _Ticket:
    """One publish waiting for a group commit."""

    __slots__ = ("done", "error", "events", "first")

    def __init__(self, events: list[tuple[str, bytes]]) -> None:
        self.events = events
        self.first = -1
        self.error: BaseException | None = None
        self.done = False


# every open embedded stream of this process, to renew their locks in a forked child
_LIVE: weakref.WeakSet[EmbeddedStream] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for live in list(_LIVE):
        live._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class EmbeddedStream(Stream):
    """A stream in the lake's ``_streams`` namespace; no server, safe across processes."""

    backend = "embedded"

    def __init__(self, lake: Any, name: str) -> None:
        super().__init__(check_stream_name(name))
        self.folder = streams_root(lake) / name  # first: it refuses a remote lake clearly
        settings = lake.settings
        self._sync = str(settings.for_namespace(INTERNAL_NS, "sync"))
        self._sync_interval = float(settings["sync_interval"])
        self._ack_timeout = float(settings["stream_ack_timeout"])
        self._max_bytes = int(settings["stream_max_event_bytes"])
        self._poll = max(float(settings["stream_poll_interval"]), 0.0005)
        self.folder.mkdir(parents=True, exist_ok=True)
        fs = getattr(lake, "_fs", None)  # the lake's file layer (tests swap in fault layers)
        self._fs: FileLayer = fs if isinstance(fs, FileLayer) else OSFileLayer()
        self._log = Log(
            str(self.folder),
            name,
            int(settings["stream_segment_size"]),
            self._sync,
            sync_interval=self._sync_interval,
            fs=self._fs,
        )
        # group commit: publishes of concurrent threads share one write and one fsync
        self._queue: list[_Ticket] = []
        self._cv = threading.Condition()
        self._leading = False
        self._groups: dict[str, _Group] = {}
        self._groups_mu = threading.Lock()
        self._closed = False
        _LIVE.add(self)
        try:
            self._log.recover(self._rewind_groups)
        except BaseException:
            self.close()
            raise

    def _after_fork(self) -> None:
        """In a forked child: the threads that held these locks, or led a group commit,
        do not exist there; their publishes were the parent's and are not waited for."""
        self._queue = []
        self._cv = threading.Condition()
        self._leading = False
        self._groups_mu = threading.Lock()
        for g in self._groups.values():
            g._after_fork()

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
        ticket = _Ticket(encoded)
        with self._cv:
            self._queue.append(ticket)
            while not ticket.done and self._leading:
                self._cv.wait()  # a leader is writing; ours goes in the next group
            if not ticket.done:
                self._leading = True
                group, self._queue = self._queue, []
        if not ticket.done:
            self._commit(group)  # lead: one write and one fsync for every queued publish
        if ticket.error is not None:
            raise ticket.error
        return [str(ticket.first + i) for i in range(len(encoded))]

    def _commit(self, group: list[_Ticket]) -> None:
        try:
            firsts = self._log.append([t.events for t in group], time.time_ns())
            for t, first in zip(group, firsts, strict=True):
                t.first = first
        except BaseException as exc:
            for t in group:
                t.error = exc
        finally:
            with self._cv:
                for t in group:
                    t.done = True
                self._leading = False
                self._cv.notify_all()

    # ---------------------------------------------------------------- recovery
    def _rewind_groups(self, first: int, end: int) -> None:
        """Rewind every group that is ahead of the log (run at open, under the log's
        exclusive lock, before any publish can reuse the lost offsets).

        With ``sync = "batch"`` or ``"none"`` a publish is acknowledged before its
        frame is fsynced, but a consumer may already have read it and its group state
        (an ack is fsynced) may outlive the frame: after a power cut the group's
        ``next`` points past the end of the log. The lost offsets are given again to
        the next events published, so a group left there would skip them. Its ``next``
        goes back to the end of the log, pending entries past it are dropped, and the
        group's ``epoch`` counts the rewind (``lost``: events it had consumed that the
        log no longer holds). The rewound state is fsynced whatever the sync policy: it
        must be on disk before the offsets are used again.
        """
        folder = self.folder / "groups"
        if not folder.is_dir():
            return
        for name in sorted({p.name.split(".")[0] for p in folder.glob("*.lock")}):
            with self._group(name) as g:
                try:
                    state = g.load(first)
                except StoreError:
                    continue  # damaged: its own consume reports it
                ahead = int(state["next"]) - end
                if ahead <= 0:
                    continue
                state["next"] = end
                state["pending"] = {k: v for k, v in state["pending"].items() if int(k) < end}
                state["epoch"] = int(state.get("epoch", 0)) + 1
                state["lost"] = int(state.get("lost", 0)) + ahead
                g.save(state, commit=True, durable=True)
            log.warning(
                "stream %s: group %s was %d events past the end of the log (offset %d),"
                " which a power cut took back; it continues from there",
                self.name,
                name,
                ahead,
                end,
            )

    # ---------------------------------------------------------------- consuming
    def _group(self, group: str) -> _Group:
        with self._groups_mu:
            g = self._groups.get(group)
            if g is None:
                g = _Group(self.folder / "groups", group, self._sync != "none", self._fs)
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
            g.save(state, commit=False)
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
                g.save(state, commit=True)
        return done

    # ---------------------------------------------------------------- replay and info
    def replay(self, from_offset: str | None = None) -> Iterator[Message]:
        self._check_open("replay")
        start = 0
        if from_offset is not None:
            start = check_offsets(self.name, [from_offset], _parse_offset)[0] + 1
        self._log.refresh()
        end = self._log.end_seq()
        while True:
            # read even past the end once: damage there is raised, not hidden
            batch = self._log.read(start, min(1000, max(end - start, 1)))
            for seq, event_id, ts_ns, data in batch:
                if seq >= end:
                    return
                yield self._message(seq, event_id, ts_ns, data, 0)
            if not batch:
                return
            start = batch[-1][0] + 1

    def info(self) -> dict[str, Any]:
        self._check_open("info")
        self._log.refresh()
        first, end = self._log.first_seq(), self._log.end_seq()
        groups: dict[str, Any] = {}
        folder = self.folder / "groups"
        names = {p.name.split(".")[0] for p in folder.glob("*.lock")} if folder.is_dir() else set()
        for name in sorted(names):
            with self._group(name) as g:
                state = g.load(first)
            pending = [int(k) for k in state["pending"]]
            committed = min([*pending, int(state["next"])])
            groups[name] = {
                "committed": committed,  # every offset below it is acknowledged
                "pending": len(pending),
                "lag": end - int(state["next"]),
            }
            if state.get("epoch"):  # rewound after a power cut took events it had read
                groups[name]["epoch"] = int(state["epoch"])
                groups[name]["lost"] = int(state.get("lost", 0))
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
        _LIVE.discard(self)
        try:
            self._log.close()  # (fsyncs what sync = "batch" left; a failed fsync raises)
        finally:
            for g in self._groups.values():
                g.close()


def max_wait(until: float) -> float:
    return max(until - time.monotonic(), 0.0)
