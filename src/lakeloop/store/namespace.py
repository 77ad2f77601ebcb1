"""A namespace: its own index, volumes, blobs, writer lock and quota.

Writes follow one path. A caller thread validates its input, hashes the data and queues
an operation; the first queued thread becomes the *leader* and commits everything queued
so far as one group: it takes the namespace's writer lock (shared with other processes),
appends the records to the active volume in one write, makes them durable with one
``fdatasync`` (``sync = "always"``), records them in the index in one transaction and
wakes every thread of the group. Concurrent writers therefore share fsyncs, and a put
returns only once its record is durable and visible.

Reads never take a lock: they look the key up in the index (SQLite in WAL mode) and read
the record with one ``pread``; the record's CRC32C is checked before any byte is returned.
"""

from __future__ import annotations

import bisect
import builtins
import errno
import hashlib
import io
import json
import operator
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

import zstandard

from lakeloop.errors import (
    ChecksumError,
    InsufficientSpace,
    InvalidInput,
    InvalidKey,
    LakeloopError,
    NamespaceUnavailable,
    NotFound,
    QuotaExceeded,
    StoreError,
)
from lakeloop.settings import SETTINGS
from lakeloop.store import _record as rec
from lakeloop.store import _recovery
from lakeloop.store._blob import BlobReader, write_blob
from lakeloop.store._fs import FileLayer, WritableFile
from lakeloop.store._index import Row, SQLiteIndex
from lakeloop.store._lock import ProcessLock

if TYPE_CHECKING:
    from lakeloop.settings import Settings

__all__ = ["Change", "Namespace", "ObjectInfo", "VolumeInfo"]

_LIST_PAGE = 1000
_SCAN_WINDOW = 8 << 20
_VOL_OFF = operator.itemgetter(1, 2)
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)
_READ_WINDOW = 2 << 20  # read_extents: small windows, the next one fetched ahead
_BULK_CHUNK_BYTES = 4 << 20
_BULK_CHUNK_COUNT = 2048
_WRITER_MEMORY = 0.005  # a thread that put within this many seconds counts as a writer


@dataclass(slots=True)
class ObjectInfo:
    """What ``put`` and ``stat`` return: everything about one version of an object."""

    key: str
    size: int
    etag: str
    version: int
    mtime: float
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    namespace: str = ""

    @property
    def checksum(self) -> str:
        """The object's MD5 in hex (the same value as ``etag``)."""
        return self.etag


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    """One volume of a namespace (readers shard training data by volume)."""

    id: int
    state: str
    path: str
    size: int
    live_bytes: int
    live_count: int
    compressed: bool

    @property
    def garbage_ratio(self) -> float:
        body = max(self.size - rec.VOLUME_HEADER_SIZE, 0)
        return 0.0 if body == 0 else max(0.0, 1.0 - self.live_bytes / body)


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change feed: the latest put of a key, or its deletion."""

    seq: int
    key: str
    op: str
    size: int
    etag: str | None
    mtime: float = 0.0
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Op:
    kind: str  # "put" | "delete"
    key: str
    kb: bytes
    data: bytes = b""
    meta: bytes = b""
    md5: bytes = b""
    size: int = 0
    flags: int = 0
    blob: str | None = None
    missing_ok: bool = False
    seq: int = 0
    wake: threading.Lock | None = None
    content_type: str | None = None
    metadata: dict[str, str] | None = None
    done: bool = False
    error: BaseException | None = None
    result: Any = None


def _io_error(exc: OSError, op: str, target: str) -> LakeloopError:
    """An OSError as lakeloop's error: InsufficientSpace for a full disk, else StoreError."""
    cls = InsufficientSpace if exc.errno in (errno.ENOSPC, errno.EDQUOT) else StoreError
    return cls(exc.strerror or str(exc), op=op, target=target)


def _prefix_upper(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with *prefix*."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return None


class Namespace:
    """Objects under one namespace. Get one from ``Lake.namespace(name)``.

    >>> ns = lake.create_namespace("photos")            # doctest: +SKIP
    >>> ns.put("cats/1.jpg", b"...", content_type="image/jpeg").etag  # doctest: +SKIP
    """

    def __init__(self, name: str, root: str, settings: Settings, fs: FileLayer) -> None:
        self.name = name
        self.root = root
        self._settings = settings
        self._fs = fs
        self._vol_dir = os.path.join(root, "volumes")
        self._blob_dir = os.path.join(root, "blobs")
        self._index_path = os.path.join(root, "index.sqlite")
        self._closed = False
        # settings are fixed for the life of a Lake: resolve them once
        self._effective = {n: settings.for_namespace(name, n) for n in SETTINGS}
        # Before any SQLite connection exists: closing another descriptor of the index
        # file would drop the POSIX locks SQLite holds on it in this process, and a
        # closing connection in another process could then delete the live WAL.
        self._prefetch_index()
        try:
            self._index = SQLiteIndex(self._index_path)
            self._index_ino = os.stat(self._index_path).st_ino
        except Exception as exc:
            raise NamespaceUnavailable(
                f"index cannot be opened: {exc}",
                op="open namespace",
                target=name,
                hint=f"run `lakeloop fsck --rebuild-index {name}` to rebuild it from the volumes",
            ) from None
        self._lock = ProcessLock(os.path.join(root, "writer.lock"), f"namespace {name}")
        self._compact_lock = ProcessLock(os.path.join(root, "compact.lock"), f"namespace {name}")
        # group commit
        self._mu = threading.Lock()
        self._cv = threading.Condition(self._mu)
        self._queue: builtins.list[_Op] = []
        self._leader_active = False
        self._joined = threading.Condition(self._mu)  # same lock: "an op was queued"
        self._writers = 0  # threads between entering a write call and queueing their op
        self._seen_writers: dict[int, float] = {}  # thread -> when it last entered a put
        # writer state, valid while no other process has held the writer lock since
        self._active: WritableFile | None = None
        self._active_id = 0
        self._next_seq = 1
        self._last_sync = 0.0
        self._dirty = False
        self._undo: builtins.list[tuple[WritableFile, int | None]] = []
        self._batches = 0
        self._unlink_after: builtins.list[str] = []
        # readers
        self._fds: dict[int, int] = {}
        self._fds_lock = threading.Lock()
        self._retired_fds: builtins.list[int] = []
        self._lock_for_reopen = threading.Lock()
        self._locations_max = int(settings["read_cache_entries"])
        self._locations: OrderedDict[bytes, Any] | None = (
            OrderedDict() if self._locations_max > 0 else None
        )
        self._locations_tag = -1
        self._locations_mu = threading.Lock()  # a tag check and what it guards, at once
        self._local = threading.local()
        self.last_recovery: dict[str, Any] | None = None
        _recovery.recover_at_open(self)

    def _prefetch_index(self) -> None:
        """Ask the kernel to read the index ahead, in the background, so that a cold read
        costs one disk access (the record) instead of one per B-tree level as well."""
        budget = self._effective["index_prefetch"]
        for path in (self._index_path, self._index_path + "-wal"):
            if budget <= 0:
                return
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                size = min(os.fstat(fd).st_size, budget)
                os.posix_fadvise(fd, 0, size, os.POSIX_FADV_WILLNEED)
                budget -= size
            except OSError:
                pass  # advice only
            finally:
                os.close(fd)

    # ------------------------------------------------------------------ settings
    def setting(self, name: str) -> Any:
        """The effective value of a setting for this namespace."""
        return self._effective[name]

    def _vol_path(self, vol: int) -> str:
        return os.path.join(self._vol_dir, f"{vol:010d}.vol")

    def _blob_path(self, name: str) -> str:
        return os.path.join(self._blob_dir, name)

    # ------------------------------------------------------------------ validation
    def _check_key(self, key: object, op: str) -> bytes:
        if not isinstance(key, str):
            raise InvalidKey(
                f"key must be a str, not {type(key).__name__}", op=op, target=self.name
            )
        try:
            kb = key.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidKey(
                "key is not valid UTF-8", op=op, target=f"{self.name}/{key!r}"
            ) from None
        if not kb:
            raise InvalidKey("key is empty", op=op, target=self.name)
        limit = self._effective["max_key_bytes"]
        if len(kb) > limit:
            raise InvalidKey(
                f"key is {len(kb)} bytes; the limit is {limit}",
                op=op,
                target=f"{self.name}/{key[:40]}...",
            )
        return kb

    def _check_meta(
        self, key: str, content_type: object, metadata: object, op: str
    ) -> tuple[bytes, dict[str, str] | None]:
        if content_type is not None and not isinstance(content_type, str):
            raise InvalidInput("content_type must be a str", op=op, target=f"{self.name}/{key}")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            raise InvalidInput(
                "metadata must be a dict of str to str", op=op, target=f"{self.name}/{key}"
            )
        meta = rec.encode_meta(content_type, metadata)
        limit = self._settings["max_metadata_bytes"]
        if len(meta) > limit:
            raise InvalidInput(
                f"metadata is {len(meta)} bytes as JSON; the limit is {limit}",
                op=op,
                target=f"{self.name}/{key}",
                hint="raise max_metadata_bytes, or store it as an object",
            )
        return meta, metadata

    def check_write(
        self,
        key: str,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Raise what a put of *key* with this content type and metadata would raise for
        them, without writing anything.

        A server that receives the body after the key and headers (the gateway) calls this
        first, so that a key or metadata the store would refuse costs none of the upload;
        these are the very checks ``put`` runs, so the two cannot drift apart."""
        self._check_open("put")
        self._check_key(key, "put")
        self._check_meta(key, content_type, metadata, "put")

    def _check_open(self, op: str) -> None:
        if self._closed:
            raise NamespaceUnavailable("the lake is closed", op=op, target=self.name)

    # ------------------------------------------------------------------ public writes
    def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        md5: bytes | str | None = None,
    ) -> ObjectInfo:
        """Store *data* under *key*; returns once the object is durable and visible.

        Overwrites any previous version. Objects above ``blob_threshold`` are stored as
        standalone blobs. *md5* (digest or hex) may be supplied when already known.
        """
        self._check_open("put")
        kb = self._check_key(key, "put")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput(
                f"data must be bytes, not {type(data).__name__}",
                op="put",
                target=f"{self.name}/{key}",
            )
        if len(data) > self.setting("blob_threshold"):
            return self.put_stream(
                key,
                io.BytesIO(data),
                size=len(data),
                content_type=content_type,
                metadata=metadata,
                md5=md5,
            )
        meta, metadata = self._check_meta(key, content_type, metadata, "put")
        supplied = self._digest(md5, key)
        self._enter()
        try:
            data = bytes(data)
            digest = supplied or hashlib.md5(data, usedforsecurity=False).digest()
            op = _Op(
                "put",
                key,
                kb,
                data=data,
                meta=meta,
                md5=digest,
                size=len(data),
                content_type=content_type,
                metadata=metadata,
            )
        except BaseException:
            with self._cv:
                self._writers -= 1
            raise
        self._commit(op, entered=True)
        return op.result

    def _digest(self, md5: bytes | str | None, key: str) -> bytes | None:
        if md5 is None:
            return None
        if isinstance(md5, str):
            try:
                md5 = bytes.fromhex(md5)
            except ValueError:
                md5 = b""
        if len(md5) != 16:
            raise InvalidInput(
                "md5 must be 16 bytes or 32 hex digits", op="put", target=f"{self.name}/{key}"
            )
        return md5

    def put_stream(
        self,
        key: str,
        fileobj: BinaryIO,
        size: int | None = None,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        md5: bytes | str | None = None,
    ) -> ObjectInfo:
        """Store what *fileobj* yields, never holding a large object in memory.

        Small streams become ordinary records; large ones become blobs, checksummed per
        chunk. If *size* is given, a stream of another length is refused.
        """
        self._check_open("put")
        kb = self._check_key(key, "put")
        meta, metadata = self._check_meta(key, content_type, metadata, "put")
        supplied = self._digest(md5, key)
        threshold = self.setting("blob_threshold")
        head = fileobj.read(threshold + 1)
        if not isinstance(head, bytes | bytearray):
            raise InvalidInput(
                "fileobj must be opened in binary mode", op="put", target=f"{self.name}/{key}"
            )
        if len(head) <= threshold:
            if size is not None and size != len(head):
                raise InvalidInput(
                    f"stream gave {len(head)} bytes, but size={size}",
                    op="put",
                    target=f"{self.name}/{key}",
                )
            return self.put(
                key, bytes(head), content_type=content_type, metadata=metadata, md5=supplied
            )
        if not os.path.isdir(self._blob_dir):
            os.makedirs(self._blob_dir, exist_ok=True)
            if self.setting("sync") != "none":
                self._fs.sync_dir(self.root)  # the folder's name must outlive a power cut
        name = f"{time.time_ns():x}-{os.urandom(6).hex()}.blob"
        path = self._blob_path(name)
        durable = self.setting("sync") != "none"
        try:
            total, digest = write_blob(
                self._fs,
                path,
                fileobj,
                self._settings["blob_chunk_size"],
                first=bytes(head),
                durable=durable,
            )
            if size is not None and total != size:
                raise InvalidInput(
                    f"stream gave {total} bytes, but size={size}",
                    op="put",
                    target=f"{self.name}/{key}",
                )
            if durable:
                self._fs.sync_dir(self._blob_dir)
        except BaseException as exc:
            try:
                os.unlink(path)
            except OSError:
                pass
            if isinstance(exc, OSError):  # a full disk, an I/O error: lakeloop's errors
                raise _io_error(exc, "put", f"{self.name}/{key}") from None
            raise
        desc = json.dumps({"file": name, "chunk": self._settings["blob_chunk_size"]}).encode()
        op = _Op(
            "put",
            key,
            kb,
            data=desc,
            meta=meta,
            md5=supplied or digest,
            size=total,
            flags=rec.BLOB,
            blob=name,
            content_type=content_type,
            metadata=metadata,
        )
        try:
            self._commit(op)
        except BaseException:
            # Once its record was appended (op.seq set), a failure leaves the outcome
            # unknown: the record may be durable and indexed by recovery, so the blob
            # stays (at worst an orphan that fsck removes).
            if op.seq == 0:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            raise
        return op.result

    def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Delete *key*. ``NotFound`` if it does not exist, unless *missing_ok*."""
        self._check_open("delete")
        kb = self._check_key(key, "delete")
        self._commit(_Op("delete", key, kb, missing_ok=missing_ok))

    def put_many(
        self,
        items: Iterable[tuple[str, bytes] | tuple[str, bytes, dict[str, Any]]],
        *,
        content_type: str | None = None,
    ) -> int:
        """Bulk load: write every item, make them durable once at the end, return the count.

        Each item is ``(key, data)`` or ``(key, data, {"content_type": ..., "metadata": ...})``.
        Nothing is visible until all items are durable; on an error (a bad key, the quota)
        nothing of the batch is kept. Items above ``blob_threshold`` are stored as blobs,
        one by one, after the batch commits.
        """
        self._check_open("put_many")
        count = 0
        big: builtins.list[tuple[str, bytes, dict[str, Any]]] = []
        max_key = self._settings["max_key_bytes"]
        threshold = self.setting("blob_threshold")
        quota_bytes = self.setting("quota_bytes")
        quota_objects = self.setting("quota_objects")
        md5 = hashlib.md5
        # chunks well below the volume size, so volumes roll close to their size
        chunk_limit = max(min(_BULK_CHUNK_BYTES, self.setting("volume_size") // 4), 1)
        self._lock.acquire(self._settings["lock_timeout"], op="put_many")
        try:
            self._refresh()
            assert self._active is not None
            self._undo = []
            with self._index.write() as w, _Pipeline() as pipe:
                total_bytes, total_count = w.totals()
                first_seq = self._next_seq
                acc: dict[int, builtins.list[int]] = {}
                chunk: builtins.list[tuple[bytes, bytes, bytes, bytes, str | None]] = []
                chunk_bytes = 0
                for item in items:
                    key, data = item[0], item[1]
                    try:
                        kb = key.encode()
                    except (AttributeError, UnicodeEncodeError):
                        kb = b""
                    if not kb or len(kb) > max_key:
                        self._check_key(key, "put_many")  # raises the precise error
                    if type(data) is not bytes:
                        if not isinstance(data, bytearray | memoryview):
                            raise InvalidInput(
                                "data must be bytes", op="put_many", target=f"{self.name}/{key}"
                            )
                        data = bytes(data)
                    if len(item) > 2 or content_type is not None:
                        opts: dict[str, Any] = item[2] if len(item) > 2 else {}
                        ct = opts.get("content_type", content_type)
                        meta, _ = self._check_meta(key, ct, opts.get("metadata"), "put_many")
                    else:
                        ct, meta = None, b""
                    if len(data) > threshold:
                        big.append((key, data, dict(item[2]) if len(item) > 2 else {}))
                        continue
                    total_bytes += len(data)
                    total_count += 1
                    if (quota_bytes and total_bytes > quota_bytes) or (
                        quota_objects and total_count > quota_objects
                    ):
                        raise QuotaExceeded(
                            f"bulk load would hold {total_bytes} bytes in {total_count} objects;"
                            f" quota is {quota_bytes or 'unlimited'} bytes,"
                            f" {quota_objects or 'unlimited'} objects",
                            op="put_many",
                            target=self.name,
                        )
                    chunk.append(
                        (
                            kb,
                            data,
                            meta,
                            md5(data, usedforsecurity=False).digest(),
                            meta.decode() if meta else None,
                        )
                    )
                    chunk_bytes += len(data)
                    count += 1
                    if chunk_bytes >= chunk_limit or len(chunk) >= _BULK_CHUNK_COUNT:
                        self._bulk_flush(chunk, chunk_bytes, w, acc, pipe)
                        chunk, chunk_bytes = [], 0
                if chunk:
                    self._bulk_flush(chunk, chunk_bytes, w, acc, pipe)
                pipe.drain()
                if count:
                    w.add_bulk(
                        {v: (a[0], a[1]) for v, a in acc.items()},
                        sum(a[2] for a in acc.values()),
                        sum(a[1] for a in acc.values()),
                        first_seq,
                    )
                    w.advance(self._next_seq, self._active.size())
                if self.setting("sync") != "none":
                    # volumes sealed on the way were synced when they were sealed
                    self._active.sync()
            self._after_commit()
        except BaseException as exc:
            # The transaction rolled back: cut what was appended, so nothing of it stays.
            self._rollback_appends()
            if isinstance(exc, OSError):
                raise _io_error(exc, "put_many", self.name) from None
            raise
        finally:
            self._lock.release()
        for key, data, opts in big:
            self.put(
                key,
                data,
                content_type=opts.get("content_type", content_type),
                metadata=opts.get("metadata"),
            )
            count += 1
        return count

    def _bulk_flush(
        self,
        chunk: builtins.list[tuple[bytes, bytes, bytes, bytes, str | None]],
        data_bytes: int,
        w: Any,
        acc: dict[int, builtins.list[int]],
        pipe: _Pipeline,
    ) -> None:
        """Encode one chunk of a bulk load here; append and index it on the pipeline's
        thread (both release the GIL), so encoding the next chunk overlaps with them."""
        assert self._active is not None
        est = data_bytes + len(chunk) * (rec.HEADER_SIZE + 40)
        if pipe.end is None or pipe.file is not self._active:
            pipe.drain()
            pipe.file, pipe.end = self._active, self._active.size()
        if pipe.end + est > self.setting("volume_size"):
            pipe.drain()  # the roll needs every earlier append done
            self._maybe_roll(est, w)
            pipe.file, pipe.end = self._active, self._active.size()
        active = self._active
        vol = self._active_id
        # where this chunk will land: after every chunk queued before it (the file's own
        # size lags while the pipeline thread is still writing)
        start = pipe.end
        self._undo.append((active, start))
        seq = self._next_seq
        out, rows, live, logical = rec.encode_bulk(chunk, seq, time.time_ns(), vol, start)
        pipe.end = start + len(out)
        self._next_seq = seq + len(chunk)
        self._dirty = True

        def append_and_index() -> None:
            active.write(out)
            w.upsert(rows)

        pipe.submit(append_and_index)
        slot = acc.setdefault(vol, [0, 0, 0])
        slot[0] += live
        slot[1] += len(rows)
        slot[2] += logical

    # ------------------------------------------------------------------ pins
    def pin(self, holder: str, versions: Iterable[int]) -> None:
        """Keep these exact versions readable (``get(key, version=...)``) until unpinned.

        Later overwrites, deletes and compaction never drop a pinned version's bytes.
        """
        self._check_open("pin")
        seqs = [int(v) for v in versions]
        with self._writing("pin"):
            for s in seqs:
                if self._index.lookup_version(s) is None:
                    raise NotFound(f"no version {s}", op="pin", target=self.name)
            # A pin lives only in the index: fsync it (synchronous=FULL), or a power loss
            # could take it back while the caller relies on it.
            with self._index.write(full_sync=self.setting("sync") != "none") as w:
                w.pin(holder, seqs)

    def unpin(self, holder: str) -> int:
        """Release every version *holder* pinned; -> how many pins were dropped."""
        self._check_open("unpin")
        with self._writing("unpin"):
            # durable before the freed versions' blob files are deleted (see pin)
            with self._index.write(full_sync=self.setting("sync") != "none") as w:
                n = w.unpin(holder)
                self._unlink_after.extend(w.take_dead_blobs())
            self._after_commit()
        return n

    def pins(self) -> dict[str, int]:
        """holder -> number of pinned versions."""
        return dict(self._index.pins())

    # ------------------------------------------------------------------ group commit
    def _enter(self) -> None:
        with self._cv:
            self._writers += 1
            self._seen_writers[threading.get_ident()] = time.monotonic()

    def _active_writers(self) -> int:
        """Threads that put something within the last few milliseconds (under _cv)."""
        now = time.monotonic()
        seen = self._seen_writers
        stale = [t for t, at in seen.items() if now - at > _WRITER_MEMORY]
        for t in stale:
            del seen[t]
        return len(seen)

    def _commit(self, op: _Op, *, entered: bool = False) -> None:
        """Queue *op* and return once it is committed (or raise its error).

        Leader/follower group commit: the first thread in becomes the leader and commits
        everything queued; the others sleep on a lock of their own until the leader
        either finishes their operation or hands leadership to them. Waking exactly the
        threads that must wake keeps the GIL free for the leader.
        """
        with self._cv:
            if entered:
                self._writers -= 1
            self._queue.append(op)
            if self._leader_active:
                op.wake = threading.Lock()
                op.wake.acquire()
                self._joined.notify()
                leader = False
            else:
                self._leader_active = True
                leader = True
        if not leader:
            assert op.wake is not None
            op.wake.acquire()  # released by a leader: op done, or we lead now
            if op.done:
                if op.error is not None:
                    raise op.error
                return
        with self._cv:
            # Threads that wrote a moment ago are about to queue again (they are hashing,
            # or just woke from the last group): wait a fraction of an fsync for them, so
            # that all of them share the next fsync and index commit.
            expected = self._active_writers()
            patience = self._effective["group_commit_wait"]
            deadline = time.monotonic() + patience
            while len(self._queue) < expected or self._writers > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._joined.wait(left)
            batch, self._queue = self._queue, []
        try:
            self._run_batch(batch)
        finally:
            for other in batch:
                other.done = True
                if other is not op and other.wake is not None:
                    other.wake.release()
            with self._cv:
                if self._queue:
                    nxt = self._queue[0]
                    assert nxt.wake is not None
                    nxt.wake.release()  # it leads the next group
                else:
                    self._leader_active = False
        if op.error is not None:
            raise op.error

    def _run_batch(self, batch: builtins.list[_Op]) -> None:
        try:
            with self._writing("put"):
                try:
                    self._undo = []
                    self._append_and_index(batch, None, sync=True)
                except BaseException:
                    self._rollback_appends()
                    raise
                self._after_commit()
        except BaseException as exc:
            err = exc
            if isinstance(exc, OSError):
                err = _io_error(exc, "put", self.name)
            for op in batch:
                if not op.done:
                    op.error = err
            try:
                self._reset_writer()
            except Exception:
                pass

    class _Writing:
        def __init__(self, ns: Namespace, op: str) -> None:
            self.ns, self.op = ns, op

        def __enter__(self) -> None:
            self.ns._lock.acquire(self.ns._settings["lock_timeout"], op=self.op)
            try:
                self.ns._refresh()
            except BaseException:
                self.ns._lock.release()
                raise

        def __exit__(self, *exc: object) -> None:
            self.ns._lock.release()

    def _writing(self, op: str) -> Namespace._Writing:
        return Namespace._Writing(self, op)

    def _append_and_index(
        self,
        batch: builtins.list[_Op],
        w: Any,
        *,
        sync: bool,
    ) -> None:
        """Append *batch*'s records, sync (if asked), and record them in the index.

        With *w* (an open transaction) everything happens inside it. Without, a batch of
        plain puts that needs no volume roll takes the fast path: one multi-row upsert in
        its own implicit transaction; anything else opens a transaction here.
        """
        assert self._active is not None
        quota_bytes = self.setting("quota_bytes")
        quota_objects = self.setting("quota_objects")
        if w is None:
            simple = not (quota_bytes or quota_objects) and all(
                op.kind == "put" and op.blob is None for op in batch
            )
            if simple and (self._batches + 1) % 256 != 0:
                size_est = sum(
                    rec.record_length(len(o.kb), len(o.meta), len(o.data)) for o in batch
                )
                size = self._active.size()
                simple = size <= rec.VOLUME_HEADER_SIZE or size + size_est <= self.setting(
                    "volume_size"
                )
            else:
                simple = False
            if not simple:
                with self._index.write() as txn:
                    self._append_and_index(batch, txn, sync=sync)
                return
        now = time.time_ns()
        ready: builtins.list[_Op] = []
        totals = w.totals() if (quota_bytes or quota_objects) else (0, 0)
        tb, tc = totals
        seen: dict[bytes, Row | None] = {}
        for op in batch:
            if op.kind == "delete":
                cur = seen[op.kb] if op.kb in seen else w.current(op.kb)
                if cur is None:
                    if not op.missing_ok:
                        op.error = NotFound(
                            "no such object", op="delete", target=f"{self.name}/{op.key}"
                        )
                    op.done = True
                    continue
                seen[op.kb] = None
                tb -= cur.size
                tc -= 1
                ready.append(op)
            else:
                if quota_bytes or quota_objects:
                    cur = seen[op.kb] if op.kb in seen else w.current(op.kb)
                    nb = tb + op.size - (cur.size if cur else 0)
                    nc = tc + (0 if cur else 1)
                    if (quota_bytes and nb > quota_bytes) or (quota_objects and nc > quota_objects):
                        op.error = QuotaExceeded(
                            f"namespace would hold {nb} bytes in {nc} objects; quota is "
                            f"{quota_bytes or 'unlimited'} bytes, "
                            f"{quota_objects or 'unlimited'} objects",
                            op="put",
                            target=f"{self.name}/{op.key}",
                        )
                        op.done = True
                        continue
                    tb, tc = nb, nc
                seen[op.kb] = Row(0, op.kb, 0, 0, 0, op.size, b"", 0, 0, None, None)
                ready.append(op)
        if not ready:
            return
        if w is not None:
            size_est = sum(rec.record_length(len(o.kb), len(o.meta), len(o.data)) for o in ready)
            self._maybe_roll(size_est, w)
        active = self._active
        assert active is not None
        vol = self._active_id
        off = active.size()
        self._undo.append((active, off))
        parts: builtins.list[bytes] = []
        rows: builtins.list[tuple[Any, ...]] = []
        for op in ready:
            seq = self._next_seq
            self._next_seq += 1
            op.seq = seq
            if op.kind == "delete":
                data = rec.encode_record(seq=seq, key=op.kb, flags=rec.TOMBSTONE, ts_ns=now)
            else:
                data = rec.encode_record(
                    seq=seq,
                    key=op.kb,
                    data=op.data,
                    meta=op.meta,
                    flags=op.flags,
                    ts_ns=now,
                    size=op.size,
                    md5=op.md5,
                )
                rows.append(
                    (
                        seq,
                        op.kb,
                        vol,
                        off,
                        len(data),
                        op.size,
                        op.md5,
                        op.flags,
                        now,
                        op.meta.decode() if op.meta else None,
                        op.blob,
                    )
                )
                op.result = ObjectInfo(
                    key=op.key,
                    size=op.size,
                    etag=op.md5.hex(),
                    version=seq,
                    mtime=now / 1e9,
                    content_type=op.content_type,
                    metadata=dict(op.metadata or {}),
                    namespace=self.name,
                )
            op.data = b""  # the bytes now live in `parts`; let them go with it
            parts.append(data)
            off += len(data)
        active.write(b"".join(parts))
        parts.clear()
        self._dirty = True
        self._batches += 1
        if sync:
            self._sync_policy(active)
        if w is None:
            # (every statement hands the GIL over twice: the fast path has one)
            self._index.upsert_autocommit(rows)
            return
        # index, in the order the records were written
        pending: builtins.list[tuple[Any, ...]] = []
        next_row = iter(rows)
        killed_blob = False
        for op in ready:
            if op.kind == "delete":
                if pending:
                    w.upsert(pending)
                    pending = []
                w.delete(op.kb, op.seq)
                killed_blob = True
            else:
                killed_blob = killed_blob or op.blob is not None
                pending.append(next(next_row))
        if pending:
            w.upsert(pending)
        if killed_blob or self._batches % 256 == 0:
            # an overwrite may have orphaned a blob too; those wait for the periodic check
            self._unlink_after.extend(w.take_dead_blobs())
        w.advance(self._next_seq, off)

    def _sync_policy(self, f: WritableFile) -> None:
        policy = self.setting("sync")
        if policy == "always":
            f.sync()
            self._dirty = False
        elif policy == "batch":
            now = time.monotonic()
            if now - self._last_sync >= self._settings["sync_interval"]:
                f.sync()
                self._last_sync = now
                self._dirty = False

    def flush(self) -> None:
        """Make every write so far durable (useful with ``sync = "batch"`` or ``"none"``)."""
        with self._writing("flush"):
            if self._active is not None:
                self._active.sync()
                self._dirty = False

    def _rollback_appends(self) -> None:
        """Cut records a failed transaction appended, so no unacknowledged write appears."""
        for f, size in reversed(self._undo):
            try:
                if size is None:
                    f.close()
                    self._fs.unlink(f.path)
                else:
                    f.truncate(size)
            except OSError:
                pass  # recovery at the next open cuts or indexes what is left
        self._undo = []
        self._reset_writer()

    def _after_commit(self) -> None:
        """Delete blob files that the last transaction made unreachable.

        Best effort: the transaction is committed, so a failure here must not fail the
        write (put_stream would then delete the blob it just committed); a blob left
        behind is an orphan that fsck finds and removes.
        """
        names, self._unlink_after = self._unlink_after, []
        for name in names:
            try:
                self._fs.unlink(self._blob_path(name))
            except OSError:
                pass

    # ------------------------------------------------------------------ writer state
    def _reset_writer(self) -> None:
        if self._active is not None:
            try:
                self._active.close()
            except OSError:
                pass
        self._active = None

    def _refresh(self) -> None:
        """Bring the writer state up to date (under the writer lock): see ``_recovery``."""
        _recovery.refresh(self)

    def _rebuild_locked(self, reason: str) -> dict[str, Any]:
        return _recovery.rebuild_locked(self, reason)

    def _index_replaced(self) -> bool:
        """Reopen the index if fsck rebuilt it in another process (a new file).

        Checked on misses only: a rebuild is rare, and a stale reader still reads
        correct, verified bytes."""
        try:
            ino = os.stat(self._index_path).st_ino
        except FileNotFoundError:
            return False
        if ino == self._index_ino:
            return False
        with self._lock_for_reopen:
            if os.stat(self._index_path).st_ino != self._index_ino:
                old = self._index
                self._index = SQLiteIndex(self._index_path)
                self._index_ino = os.stat(self._index_path).st_ino
                old.close()
        return True

    def _new_volume_file(self, vol: int) -> WritableFile:
        path = self._vol_path(vol)
        if os.path.exists(path):
            self._fs.unlink(path)  # a leftover from a crash before its volume was registered
        f = self._fs.create(path)
        f.write(rec.encode_volume_header(vol, time.time_ns()))
        if self.setting("sync") != "none":
            f.sync()
            self._fs.sync_dir(self._vol_dir)
        return f

    def _maybe_roll(self, incoming: int, w: Any) -> None:
        """Seal the active volume and start a new one if *incoming* bytes would overflow it."""
        assert self._active is not None
        size = self._active.size()
        if size <= rec.VOLUME_HEADER_SIZE or size + incoming <= self.setting("volume_size"):
            return
        self._seal_active(w)

    def _seal_active(self, w: Any) -> None:
        assert self._active is not None
        if self.setting("sync") != "none":
            self._active.sync()
        old = self._active_id
        vol = w.get_state("next_vol", old + 1)
        new = self._new_volume_file(vol)
        self._undo.append((new, None))
        w.update_volume(old, state="sealed", sealed_ns=time.time_ns(), size=self._active.size())
        w.add_volume(vol, "active", time.time_ns(), rec.VOLUME_HEADER_SIZE, self._next_seq)
        w.set_state(active_vol=vol, next_vol=vol + 1, hwm=rec.VOLUME_HEADER_SIZE)
        self._active.close()
        self._active = new
        self._active_id = vol

    # ------------------------------------------------------------------ reads
    def _fd(self, vol: int) -> int:
        fd = self._fds.get(vol)
        if fd is None:
            with self._fds_lock:
                fd = self._fds.get(vol)
                if fd is None:
                    fd = os.open(self._vol_path(vol), os.O_RDONLY)
                    self._fds[vol] = fd
        return fd

    def _retire_fd(self, vol: int) -> None:
        """Stop using *vol*'s descriptor; it is closed at ``close()``, since a reader may
        still be reading through it (closing it now could hand its number to another file)."""
        with self._fds_lock:
            fd = self._fds.pop(vol, None)
            if fd is not None:
                self._retired_fds.append(fd)

    def _read_record(self, vol: int, off: int, length: int, seq: int, label: str) -> rec.Record:
        try:
            buf = os.pread(self._fd(vol), length, off)
        except FileNotFoundError:
            raise _Moved() from None
        try:
            r = rec.parse_record(buf, off)
        except rec.RecordError as exc:
            raise _Damaged(str(exc)) from None
        if r.seq != seq:
            raise _Damaged(f"record holds version {r.seq}, index expects {seq}")
        return r

    def _fetch(self, key: str, version: int | None, op: str) -> tuple[int, rec.Record]:
        """Look *key* up and read its verified record -> (volume, record).

        Retries when compaction moved the object between the lookup and the read.
        """
        kb = self._check_key(key, op)
        label = f"{self.name}/{key}"
        for attempt in range(3):
            if version is None:
                loc = self._index.locate(kb)
                if loc is None and self._index_replaced():
                    loc = self._index.locate(kb)
                if loc is None:
                    raise NotFound("no such object", op=op, target=label)
                seq, vol, off, length = loc[0], loc[1], loc[2], loc[3]
            else:
                full = self._index.lookup_version(int(version))
                if full is None or full.key != kb:
                    raise NotFound(f"no version {version} of this object", op=op, target=label)
                seq, vol, off, length = full.seq, full.vol, full.off, full.len
            try:
                r = self._read_record(vol, off, length, seq, label)
                if r.key != kb:
                    raise _Damaged("record holds another key")
                return vol, r
            except _Moved:
                continue
            except _Damaged as exc:
                # Compaction may have moved the object between our lookup and our read:
                # look again before calling it corruption.
                if attempt < 2:
                    where: tuple[int, int] | None = None
                    if version is None:
                        again = self._index.locate(kb)
                        where = None if again is None else (again[1], again[2])
                    else:
                        full = self._index.lookup_version(int(version))
                        where = None if full is None else (full.vol, full.off)
                    if where is not None and where != (vol, off):
                        continue
                raise ChecksumError(
                    str(exc), op=op, target=label, volume=self._vol_path(vol), offset=off
                ) from None
        raise StoreError("object kept moving while being read", op=op, target=label)

    def _get_fast(self, key: str) -> bytes | None:
        """One lookup and one ``pread`` for a plain record; ``None`` sends the caller down
        the general path (blob, compressed, moved, damaged, bad key, missing).

        Locations come from a bounded cache while no writer has held the namespace's
        writer lock since they were looked up (every writer bumps a shared counter before
        it changes anything and again after it committed), else from the index."""
        kb = key.encode("utf-8", "surrogatepass")
        cache = self._locations
        loc = None
        if cache is not None:
            try:
                tag = self._lock.counter()
            except OSError:  # the lock file cannot be mapped (a read-only lake): no cache
                self._locations = cache = None
                tag = self._locations_tag
        if cache is not None:
            if tag != self._locations_tag:
                with self._locations_mu:
                    if tag != self._locations_tag:
                        cache.clear()
                        self._locations_tag = tag
            loc = cache.get(kb)
        if loc is None:
            loc = self._index.locate(kb)
            if loc is None:
                return None
            if cache is not None:
                # cached only if no writer took or let go of the lock since *tag* was read:
                # a lookup made during someone's write may be stale once it commits, and
                # another thread may have moved the cache on to a newer tag meanwhile
                with self._locations_mu:
                    if self._locations_tag == tag and self._lock.counter() == tag:
                        if len(cache) >= self._locations_max:
                            try:
                                cache.popitem(last=False)
                            except KeyError:  # emptied by a pop outside the lock
                                pass
                        cache[kb] = loc
        seq, vol, off, length = loc[0], loc[1], loc[2], loc[3]
        fd = self._fds.get(vol)
        try:
            if fd is None:
                fd = self._fd(vol)
            buf = os.pread(fd, length, off)
        except OSError:
            return None
        got = rec.inline_payload(buf, seq, kb)
        if got is None:
            if cache is not None:
                cache.pop(kb, None)
            return None
        flags, data, size = got
        if flags & rec.ZSTD:
            try:
                data = self._decompressor(vol).decompress(data, max_output_size=size)
            except zstandard.ZstdError:
                return None  # the general path reports it
            if len(data) != size:
                return None
        return data

    def _payload(self, r: rec.Record, vol: int, label: str) -> bytes:
        if r.flags & rec.ZSTD:
            try:
                data = self._decompressor(vol).decompress(r.data, max_output_size=r.size)
            except zstandard.ZstdError as exc:
                raise ChecksumError(
                    f"compressed record does not decompress: {exc}",
                    op="get",
                    target=label,
                    volume=self._vol_path(vol),
                    offset=r.offset,
                ) from None
            if len(data) != r.size:
                raise ChecksumError(
                    "decompressed size mismatch",
                    op="get",
                    target=label,
                    volume=self._vol_path(vol),
                    offset=r.offset,
                )
            return data
        return r.data

    def _decompressor(self, vol: int) -> zstandard.ZstdDecompressor:
        cache: dict[int, zstandard.ZstdDecompressor] | None = getattr(self._local, "dctx", None)
        if cache is None:
            cache = self._local.dctx = {}
        d = cache.get(vol)
        if d is None:
            head = os.pread(self._fd(vol), 1 << 20, rec.VOLUME_HEADER_SIZE)
            dict_data = None
            try:
                first = rec.parse_record(head, rec.VOLUME_HEADER_SIZE)
                if first.flags & rec.DICT:
                    dict_data = zstandard.ZstdCompressionDict(first.data)
            except rec.RecordError:
                pass
            d = (
                zstandard.ZstdDecompressor(dict_data=dict_data)
                if dict_data
                else zstandard.ZstdDecompressor()
            )
            cache[vol] = d
        return d

    def _blob_reader(self, r: rec.Record, label: str) -> BlobReader:
        name = json.loads(r.data)["file"]
        return BlobReader(self._blob_path(name), r.size, label=label)

    def _fetch_open(
        self, key: str, version: int | None, op: str
    ) -> tuple[int, rec.Record, BlobReader | None]:
        """``_fetch``, with the blob file opened for a blob record.

        A writer deletes the blob of an overwritten or deleted object right after its
        commit, so a blob missing when its record was looked up a moment earlier is looked
        up again: the key now answers with its new record (or NotFound). Only a blob that
        is missing while its record is still the current one is damage."""
        label = f"{self.name}/{key}"
        for _ in range(3):
            vol, r = self._fetch(key, version, op)
            if not r.flags & rec.BLOB:
                return vol, r, None
            try:
                return vol, r, self._blob_reader(r, label)
            except ChecksumError:
                again = self._fetch(key, version, op)[1]  # NotFound when it was deleted
                if again.seq == r.seq:
                    raise
        raise StoreError("object kept changing while being read", op=op, target=label)

    def get(self, key: str, *, version: int | None = None) -> bytes:
        """The object's bytes, checksum verified. ``version`` reads an exact (pinned) version."""
        self._check_open("get")
        if version is None and type(key) is str:
            data = self._get_fast(key)
            if data is not None:
                return data
        vol, r, blob = self._fetch_open(key, version, "get")
        if blob is not None:
            with blob as b:
                return b.read_range(0, r.size)
        return self._payload(r, vol, f"{self.name}/{key}")

    def get_range(
        self, key: str, start: int, end: int | None = None, *, version: int | None = None
    ) -> bytes:
        """``get(key)[start:end]`` (Python slice semantics); blobs read only what is needed."""
        self._check_open("get")
        if not isinstance(start, int) or not (end is None or isinstance(end, int)):
            raise InvalidInput(
                "start and end must be integers", op="get_range", target=f"{self.name}/{key}"
            )
        vol, r, blob = self._fetch_open(key, version, "get")
        lo, hi, _ = slice(start, end).indices(r.size)
        hi = max(hi, lo)
        if blob is not None:
            with blob as b:
                return b.read_range(lo, hi)
        return self._payload(r, vol, f"{self.name}/{key}")[lo:hi]

    def open(self, key: str, *, version: int | None = None) -> BinaryIO:
        """A seekable binary file object over the object (streamed for blobs)."""
        self._check_open("open")
        vol, r, blob = self._fetch_open(key, version, "open")
        if blob is not None:
            return io.BufferedReader(blob, buffer_size=1 << 20)
        return io.BytesIO(self._payload(r, vol, f"{self.name}/{key}"))

    def _info(self, row: Row) -> ObjectInfo:
        meta = rec.decode_meta(row.meta)
        return ObjectInfo(
            key=row.key.decode("utf-8"),
            size=row.size,
            etag=row.md5.hex(),
            version=row.seq,
            mtime=row.mtime / 1e9,
            content_type=meta.get("ct"),
            metadata=dict(meta.get("m", {})),
            namespace=self.name,
        )

    def stat(self, key: str, *, version: int | None = None) -> ObjectInfo:
        """Metadata of *key* (from the index; no data is read)."""
        self._check_open("stat")
        kb = self._check_key(key, "stat")
        row = (
            self._index.lookup(kb) if version is None else self._index.lookup_version(int(version))
        )
        if row is None or row.key != kb:
            raise NotFound(
                "no such object" if version is None else f"no version {version}",
                op="stat",
                target=f"{self.name}/{key}",
            )
        return self._info(row)

    def locate(self, versions: Iterable[int]) -> builtins.list[tuple[int, int, int]]:
        """Where exact versions lie: ``[(version, volume, offset)]`` in physical order.

        Read-only and index-only. Training readers use it to read a snapshot's pinned
        versions volume by volume, in file order, and to shard by volume. Compaction may
        move a version afterwards; ``get(key, version=...)`` still finds it.
        """
        return [(v, vol, off) for v, vol, off, _ in self.extents(versions)]

    def extents(self, versions: Iterable[int]) -> builtins.list[tuple[int, int, int, int]]:
        """Like :meth:`locate`, with each record's length in the volume:
        ``[(version, volume, offset, length)]`` in physical order (for
        :meth:`read_extents`)."""
        self._check_open("locate")
        seqs = [int(v) for v in versions]
        found = self._index.where_versions(seqs)
        out = []
        for s in seqs:
            if s not in found:
                raise NotFound(f"no version {s}", op="locate", target=self.name)
            out.append((s, *found[s]))
        out.sort(key=_VOL_OFF)
        return out

    def read_extents(
        self,
        vol: int,
        offsets: Sequence[int],
        lengths: Sequence[int],
        versions: Sequence[int],
        md5s: Sequence[bytes],
    ) -> Iterator[builtins.list[bytes | None]]:
        """The data of records of volume *vol* (``offsets`` ascending, as
        :meth:`extents` gives them), read in sequential windows of up to 2 MiB, the next
        window asked of the disk ahead (``POSIX_FADV_WILLNEED``): one list per window, in
        order.

        Each record is verified (CRC32C, its version, its recorded MD5 ``md5s[i]``, raw
        digest). ``None`` stands for a record not readable this way: moved by compaction
        since the lookup, compressed, a blob, or damaged; ``get(key, version=...)`` reads
        it or reports the damage. The bulk path of training readers.
        """
        self._check_open("read")
        n = len(offsets)
        ends = [off + length for off, length in zip(offsets, lengths, strict=True)]
        windows = []
        i = 0
        while i < n:
            j = max(bisect.bisect_right(ends, offsets[i] + _READ_WINDOW, lo=i), i + 1)
            windows.append((offsets[i], ends[j - 1], i, j))
            i = j
        for w, (start, end, i, j) in enumerate(windows):
            try:
                fd = self._fd(vol)
                if w + 1 < len(windows) and _WILLNEED is not None:
                    # the disk fetches the next window while this one is checked and used
                    following = windows[w + 1]
                    os.posix_fadvise(fd, following[0], following[1] - following[0], _WILLNEED)
                buf = os.pread(fd, end - start, start)
            except FileNotFoundError:  # compacted away since the lookup
                buf = b""
            rels = [off - start for off in offsets[i:j]]
            yield rec.plain_payloads(buf, rels, builtins.list(versions[i:j]),
                                     builtins.list(md5s[i:j]))  # fmt: skip

    def exists(self, key: str) -> bool:
        return self._index.locate(self._check_key(key, "exists")) is not None

    def list(
        self, prefix: str = "", start_after: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        """Objects whose key starts with *prefix*, in key (UTF-8 byte) order, streamed."""
        self._check_open("list")
        if not isinstance(prefix, str):
            raise InvalidInput("prefix must be a str", op="list", target=self.name)
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidInput("limit must be a non-negative integer", op="list", target=self.name)
        lower = prefix.encode()
        upper = _prefix_upper(lower) if lower else None
        after = start_after.encode() if start_after else None
        left = limit
        while left is None or left > 0:
            page = self._index.list_range(
                lower, upper, after, _LIST_PAGE if left is None else min(left, _LIST_PAGE)
            )
            if not page:
                return
            for row in page:
                yield self._info(row)
            after = page[-1].key
            if left is not None:
                left -= len(page)
            if len(page) < _LIST_PAGE:
                return

    def scan(
        self, prefix: str = "", *, volumes: Iterable[int] | None = None
    ) -> Iterator[tuple[ObjectInfo, bytes]]:
        """Current objects with their bytes, in physical (volume) order, with sequential reads.

        Training readers use this: shard by passing disjoint ``volumes`` (see ``volumes()``).
        Every record is verified; blobs are read whole.
        """
        self._check_open("scan")
        pre = prefix.encode()
        vols = list(volumes) if volumes is not None else [v.id for v in self.volumes()]
        for vol in vols:
            after = -1
            while True:
                rows = self._index.rows_in_volume(vol, after, _LIST_PAGE)
                if not rows:
                    break
                after = rows[-1].off
                wanted = [r for r in rows if r.key.startswith(pre)]
                yield from self._scan_rows(vol, wanted)
                if len(rows) < _LIST_PAGE:
                    break

    def _scan_rows(self, vol: int, rows: builtins.list[Row]) -> Iterator[tuple[ObjectInfo, bytes]]:
        i = 0
        while i < len(rows):
            start = rows[i].off
            j = i
            while j < len(rows) and rows[j].off + rows[j].len - start <= _SCAN_WINDOW:
                j += 1
            j = max(j, i + 1)
            end = rows[j - 1].off + rows[j - 1].len
            try:
                buf = os.pread(self._fd(vol), end - start, start)
            except FileNotFoundError:
                buf = b""
            for row in rows[i:j]:
                part = memoryview(buf)[row.off - start : row.off - start + row.len]
                data: bytes | None = None
                try:
                    r = rec.parse_record(part, row.off)
                    if r.seq == row.seq and not r.flags & rec.BLOB:
                        data = self._payload(r, vol, f"{self.name}/{row.key.decode()}")
                except rec.RecordError:
                    pass
                info = self._info(row)
                if data is None:
                    # moved by compaction, damaged, or a blob (whose file an overwrite may
                    # have deleted since): the single-object path sorts it out
                    try:
                        data = self.get(info.key, version=row.seq)
                    except NotFound:
                        continue
                yield info, data
            i = j

    # ------------------------------------------------------------------ introspection
    def volumes(self) -> builtins.list[VolumeInfo]:
        """The namespace's volumes (active, sealed, compacted), oldest first."""
        return [
            VolumeInfo(
                id=v["id"],
                state=v["state"],
                path=self._vol_path(v["id"]),
                size=v["size"],
                live_bytes=v["live_bytes"],
                live_count=v["live_count"],
                compressed=bool(v["compressed"]),
            )
            for v in self._index.volumes()
            if v["state"] in ("active", "sealed")
        ]

    def changes(self, since: int = 0, limit: int | None = None) -> Iterator[Change]:
        """Puts and deletes with a sequence number above *since*, oldest first.

        The feed is compacted: an object overwritten several times appears once, at its
        latest version. Pass the last ``seq`` you saw to continue.
        """
        left = limit
        while left is None or left > 0:
            page = self._index.changes(since, _LIST_PAGE if left is None else min(left, _LIST_PAGE))
            if not page:
                return
            for seq, key, kind, size, md5, mtime, meta_text in page:
                meta = rec.decode_meta(meta_text)
                yield Change(
                    seq=seq,
                    key=key.decode("utf-8"),
                    op=kind,
                    size=size,
                    etag=md5.hex() if md5 else None,
                    mtime=mtime / 1e9,
                    content_type=meta.get("ct"),
                    metadata=dict(meta.get("m", {})),
                )
            since = page[-1][0]
            if left is not None:
                left -= len(page)

    @property
    def last_seq(self) -> int:
        """The sequence number of the latest write (0 if none)."""
        return self._index.state("next_seq", 1) - 1

    def usage(self) -> dict[str, int]:
        """Logical bytes and objects, bytes on disk, volumes and blobs."""
        logical, count = self._index.totals()
        vols = self._index.volumes()
        disk = sum(v["size"] for v in vols if v["state"] in ("active", "sealed"))
        blob_bytes = 0
        blobs = 0
        if os.path.isdir(self._blob_dir):
            for entry in os.scandir(self._blob_dir):
                blobs += 1
                blob_bytes += entry.stat().st_size
        live = sum(v["live_bytes"] for v in vols if v["state"] in ("active", "sealed"))
        return {
            "objects": count,
            "bytes": logical,
            "volume_bytes": disk,
            "live_record_bytes": live,
            "garbage_bytes": max(disk - live - rec.VOLUME_HEADER_SIZE * len(vols), 0),
            "blob_bytes": blob_bytes,
            "blobs": blobs,
            "volumes": len([v for v in vols if v["state"] in ("active", "sealed")]),
        }

    # ------------------------------------------------------------------ maintenance
    def compact(self, wait: bool = True, *, force: bool = True) -> Any:
        """Reclaim garbage and compress sealed volumes; -> ``CompactionReport``.

        ``force`` (the default for a direct call) seals the active volume and compacts
        every volume with garbage; the background thread passes ``force=False`` and acts
        only on the thresholds. With ``wait=False`` it runs in a thread and returns it.
        """
        from lakeloop.store._compact import compact

        self._check_open("compact")
        if not wait:
            t = threading.Thread(
                target=compact,
                args=(self,),
                kwargs={"force": force},
                name=f"compact-{self.name}",
                daemon=True,
            )
            t.start()
            return t
        return compact(self, force=force)

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._dirty and self._active is not None and self.setting("sync") != "none":
                try:
                    self._active.sync()
                except OSError:
                    pass
        finally:
            self._closed = True
            self._reset_writer()
            with self._fds_lock:
                fds = [*self._fds.values(), *self._retired_fds]
                self._fds, self._retired_fds = {}, []
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._index.close()
            self._lock.close()
            self._compact_lock.close()

    def __repr__(self) -> str:
        return f"<Namespace {self.name!r} at {self.root!r}>"


class _Pipeline:
    """One background thread running submitted jobs in order (bulk load's write stage)."""

    def __init__(self) -> None:
        self._jobs: list[Any] = []
        self._cv = threading.Condition()
        self._error: BaseException | None = None
        self._closed = False
        self.file: Any = None  # the file the queued chunks go to, and where they end
        self.end: int | None = None
        self._thread = threading.Thread(target=self._run, name="lakeloop-bulk", daemon=True)

    def __enter__(self) -> _Pipeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._closed:
                    self._cv.wait()
                if not self._jobs:
                    return
                job = self._jobs[0]
            try:
                if self._error is None:
                    job()
            except BaseException as exc:
                self._error = exc
            with self._cv:
                self._jobs.pop(0)
                self._cv.notify_all()

    def submit(self, job: Any) -> None:
        with self._cv:
            # at most two chunks in flight: memory stays bounded
            while len(self._jobs) >= 2:
                self._cv.wait()
            self._raise()
            self._jobs.append(job)
            self._cv.notify_all()

    def drain(self) -> None:
        with self._cv:
            while self._jobs:
                self._cv.wait()
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


class _Moved(Exception):
    """The volume file is gone: compaction moved the object; look it up again."""


class _Damaged(Exception):
    """The bytes at the indexed location do not verify."""
