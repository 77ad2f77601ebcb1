"""The embedded stream's log: append-only segment files of checksummed frames.

::

    <stream>/segments/00000000000000000000.seg   named by the sequence number of its
                                                 first event; sealed at stream_segment_size
    <stream>/write.lock                          publishers take it exclusively (flock);
                                                 readers briefly shared, to learn the end

A publish appends one frame holding its whole batch, so a batch is all there or not at
all::

    frame header (36 B, little endian):
        magic      4  b"LLSF"
        version    1  1
        flags      1  0
        reserved   2
        count      4  events in the frame
        body_len   4  bytes of the body that follows
        first_seq  8  sequence number (= offset) of the first event
        ts_ns      8  publish time of the batch
        crc32c     4  over the header's first 32 bytes and the body
    body: per event  id_len u16 | data_len u32 | id (UTF-8) | data (JSON)

Why frames and the torn tail: a publisher killed (or a power cut) in the middle of an
append leaves a frame that is short or fails its CRC. With ``sync = "always"`` every
earlier frame was fsynced before its publish returned, so a damaged frame can only be
the last one: it is the *torn tail* of an unacknowledged publish, and the next publisher
cuts it off. A damaged frame with a valid frame after it is corruption of acknowledged
data instead, and reading it raises ``ChecksumError`` rather than skipping it.

Every write, fsync, truncation and change of names goes through the lake's file layer
(``store._fs``), like the store's volumes, so the power-cut tests can drop what was not
made durable. With ``sync = "batch"`` a background flusher fsyncs the last segment at
most ``sync_interval`` seconds after its first unsynced append: the window a power cut
can take is bounded even when no publish follows. The flusher fsyncs outside the
log's lock, so readers of the process never wait for a disk flush.

Sealing: whoever rolls to a new segment fsyncs the sealed one by its path first
(``sync != "none"``), whichever process wrote its tail: the new name becomes durable
only after every byte before it, so a power cut never leaves a hole between segments.

A failed fsync is sticky: the kernel may have dropped the unsynced pages and a second
fsync would report success anyway, so the first error is kept and every later append,
flush and close of this handle raises it (reopening the stream recovers what is on disk).
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import logging
import os
import struct
import threading
import time
import weakref
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from crc32c import crc32c

from lakeloop.errors import ChecksumError, StoreError
from lakeloop.store._fs import FileLayer, OSFileLayer, WritableFile

__all__ = ["Frame", "Log", "encode_frame"]

MAGIC = b"LLSF"
VERSION = 1
_HEADER = struct.Struct("<4sBBHIIQQI")
HEADER_SIZE = _HEADER.size  # 36
_EVENT = struct.Struct("<HI")
_SEG_SUFFIX = ".seg"
_READ_CHUNK = 4 * 1024 * 1024

log = logging.getLogger("lakeloop.stream")

# every open Log of this process, to give a forked child fresh locks (see _after_fork)
_LIVE: weakref.WeakSet[Log] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for live in list(_LIVE):
        live._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(frozen=True)
class Frame:
    """One parsed frame: events ``first_seq ...`` with their ids and JSON bytes."""

    pos: int
    end: int
    first_seq: int
    ts_ns: int
    events: list[tuple[str, bytes]]


def encode_frame(first_seq: int, ts_ns: int, events: list[tuple[str, bytes]]) -> bytes:
    body = bytearray()
    for event_id, data in events:
        raw_id = event_id.encode()
        body += _EVENT.pack(len(raw_id), len(data))
        body += raw_id
        body += data
    head = _HEADER.pack(MAGIC, VERSION, 0, 0, len(events), len(body), first_seq, ts_ns, 0)
    crc = crc32c(body, crc32c(head[:32]))
    return head[:32] + struct.pack("<I", crc) + bytes(body)


def parse_frame(buf: bytes | memoryview, off: int, base_pos: int) -> Frame | None:
    """The frame at ``buf[off:]``, or None if it is incomplete or fails its checks."""
    if len(buf) - off < HEADER_SIZE:
        return None
    magic, version, _, _, count, body_len, first_seq, ts_ns, crc = _HEADER.unpack_from(buf, off)
    if magic != MAGIC or version != VERSION:
        return None
    end = off + HEADER_SIZE + body_len
    if end > len(buf):
        return None
    body = bytes(buf[off + HEADER_SIZE : end])
    if crc32c(body, crc32c(bytes(buf[off : off + 32]))) != crc:
        return None
    events: list[tuple[str, bytes]] = []
    p = 0
    try:
        for _ in range(count):
            id_len, data_len = _EVENT.unpack_from(body, p)
            p += _EVENT.size
            event_id = body[p : p + id_len].decode()
            p += id_len
            events.append((event_id, body[p : p + data_len]))
            p += data_len
    except (struct.error, UnicodeDecodeError):
        return None
    if p != body_len:
        return None
    return Frame(base_pos + off, base_pos + end, first_seq, ts_ns, events)


def _pread_all(fd: int, size: int, pos: int) -> bytes:
    chunks = []
    while size > 0:
        got = os.pread(fd, size, pos)
        if not got:
            break
        chunks.append(got)
        size -= len(got)
        pos += len(got)
    return b"".join(chunks)


class _Segment:
    """What this process knows of one segment: where each frame starts (an index)."""

    def __init__(self, path: str, base: int) -> None:
        self.path = path
        self.base = base
        self.seqs = array("q")  # first_seq of each frame
        self.positions = array("q")
        self.scanned = 0  # bytes known to be whole frames
        self.next_seq = base  # sequence number after the last indexed frame
        self.torn_at: int | None = None  # a damaged tail seen at this position
        self.corrupt_at: int | None = None  # damage with whole frames after it
        self.sealed = False  # a later segment exists: this one never changes again
        self.complete = False  # sealed and wholly indexed

    def add(self, frame: Frame) -> None:
        self.seqs.append(frame.first_seq)
        self.positions.append(frame.pos)
        self.scanned = frame.end
        self.next_seq = frame.first_seq + len(frame.events)


class Log:
    """Reads and appends the segments of one stream; shared by its threads.

    Readers see only what publishers finished: the end of the log is taken under a
    shared flock of ``write.lock`` (publishers append and fsync under the exclusive
    one), so a half-written frame of a live publisher is never read.
    """

    def __init__(
        self,
        root: str,
        label: str,
        segment_size: int,
        sync: str,
        *,
        sync_interval: float = 0.1,
        fs: FileLayer | None = None,
    ) -> None:
        self.root = root
        self.label = label
        self.segment_size = segment_size
        self.sync = sync
        self.sync_interval = max(float(sync_interval), 0.0)
        self.seg_dir = os.path.join(root, "segments")
        os.makedirs(self.seg_dir, exist_ok=True)
        self._fs = fs or OSFileLayer()
        self._mu = threading.RLock()
        # held while the writer is fsynced outside _mu (by the flusher) and while it is
        # closed, so that a handle is never closed under a running fsync; taken after _mu
        self._sync_mu = threading.Lock()
        self._lock_fd = self._open_lock()
        self._segments: list[_Segment] = []
        self._writer: WritableFile | None = None
        self._write_seg: _Segment | None = None
        self._last_sync = float("-inf")  # the first append of a process fsyncs
        # sync = "batch": when the oldest append not yet fsynced was made (None: none is)
        self._dirty_since: float | None = None
        self._appends = 0  # appends through the writer, to see one made during an fsync
        self._sync_error: Exception | None = None  # the first failed fsync: sticky
        self._flush_cv = threading.Condition(self._mu)
        self._flusher: threading.Thread | None = None
        self._closing = False
        _LIVE.add(self)

    def _open_lock(self) -> int:
        return os.open(os.path.join(self.root, "write.lock"), os.O_RDWR | os.O_CREAT, 0o644)

    def _after_fork(self) -> None:
        """In a forked child: the locks may be owned by threads that do not exist there.

        New locks and condition, no flusher, no append handle (the parent's flusher
        fsyncs what the parent wrote), and a ``write.lock`` descriptor of its own: a flock
        belongs to the open file, so the inherited one would not exclude the parent.
        """
        self._mu = threading.RLock()
        self._sync_mu = threading.Lock()
        self._flush_cv = threading.Condition(self._mu)
        self._flusher = None
        writer, self._writer, self._write_seg = self._writer, None, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # a descriptor copy: nothing to lose
                pass
        self._dirty_since = None
        self._last_sync = float("-inf")
        if self._lock_fd >= 0 and not self._closing:
            os.close(self._lock_fd)  # (no unlock: that would release the parent's lock)
            try:
                self._lock_fd = self._open_lock()
            except OSError:  # (the stream's folder is gone): its calls fail with EBADF
                self._lock_fd = -1

    # ---------------------------------------------------------------- the end of the log
    def _list_segments(self) -> list[int]:
        return sorted(
            int(n[: -len(_SEG_SUFFIX)])
            for n in os.listdir(self.seg_dir)
            if n.endswith(_SEG_SUFFIX) and n[: -len(_SEG_SUFFIX)].isdigit()
        )

    def _seg_path(self, base: int) -> str:
        return os.path.join(self.seg_dir, f"{base:020d}{_SEG_SUFFIX}")

    def signature(self) -> tuple[int, int]:
        """Changes whenever a publish finishes (cheap: two stats, no lock)."""
        try:
            dir_mtime = os.stat(self.seg_dir).st_mtime_ns
            last = self._segments[-1].path if self._segments else None
            size = os.stat(last).st_size if last else 0
        except FileNotFoundError:
            return (0, 0)
        return (dir_mtime, size)

    def refresh(self) -> None:
        """Index every frame that finished publishing (under the shared lock)."""
        with self._mu:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
            try:
                self._refresh_locked()
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _refresh_locked(self) -> None:
        """Learn new segments and index the last one; sealed segments are indexed
        lazily, when a read first needs them, so opening a long stream stays cheap."""
        known = {s.base for s in self._segments}
        for base in self._list_segments():
            if base not in known:
                self._segments.append(_Segment(self._seg_path(base), base))
        self._segments.sort(key=lambda s: s.base)
        for seg in self._segments[:-1]:
            seg.sealed = True
        if self._segments:
            self._scan(self._segments[-1], last=True)

    def _indexed(self, i: int) -> _Segment:
        """Segment *i*, its frames indexed (a sealed one needs no lock: it never changes)."""
        seg = self._segments[i]
        if seg.sealed and not seg.complete:
            self._scan(seg, last=False)
            seg.complete = True
        return seg

    def _scan(self, seg: _Segment, last: bool) -> None:
        """Index the frames of *seg* past what is known; note a damaged tail."""
        try:
            size = os.stat(seg.path).st_size
        except FileNotFoundError:
            return
        if seg.scanned >= size or seg.corrupt_at is not None:
            return
        fd = os.open(seg.path, os.O_RDONLY)
        try:
            while seg.scanned < size:
                base = seg.scanned
                buf = _pread_all(fd, min(size - base, _READ_CHUNK), base)
                off = 0
                while (frame := parse_frame(buf, off, base)) is not None:
                    seg.add(frame)
                    off = frame.end - base
                if off:
                    continue
                # no whole frame at `base` in this chunk: a frame larger than the chunk,
                # or damage
                whole = self._big_frame(fd, buf, base, size)
                if whole is not None:
                    seg.add(whole)
                    continue
                self._damaged(seg, fd, size, last)
                return
            seg.torn_at = None
        finally:
            os.close(fd)

    @staticmethod
    def _big_frame(fd: int, buf: bytes, base: int, size: int) -> Frame | None:
        if len(buf) < HEADER_SIZE or buf[:4] != MAGIC:
            return None
        body_len = _HEADER.unpack_from(buf, 0)[5]
        total = HEADER_SIZE + body_len
        if total <= len(buf) or base + total > size:
            return None
        return parse_frame(_pread_all(fd, total, base), 0, base)

    def _damaged(self, seg: _Segment, fd: int, size: int, last: bool) -> None:
        """A frame at ``seg.scanned`` fails its checks: a torn tail, or corruption.

        Corruption is remembered, not raised here: events before it stay readable, and
        a read that reaches it (or a publish) raises ``ChecksumError``.
        """
        pos = seg.scanned
        rest = _pread_all(fd, size - pos, pos) if last else b""
        found = rest.find(MAGIC, 1)
        while last and found != -1:
            frame = parse_frame(rest, found, pos)
            if frame is not None and frame.first_seq >= seg.next_seq:
                break  # a whole frame after the damaged one: not a tail
            found = rest.find(MAGIC, found + 1)
        if last and found == -1:
            seg.torn_at = pos  # the unacknowledged tail of a publisher that died
        else:
            seg.corrupt_at = pos

    def _corrupt(self, seg: _Segment, op: str) -> ChecksumError:
        return ChecksumError(
            "a frame of the stream fails its checksum",
            op=op,
            target=self.label,
            volume=seg.path,
            offset=seg.corrupt_at,
            hint=f"events before offset {seg.next_seq} stay readable with replay; copy them"
            " to a new stream, or restore the segment from a backup",
        )

    # ---------------------------------------------------------------- reading
    def first_seq(self) -> int:
        with self._mu:
            return self._segments[0].base if self._segments else 0

    def end_seq(self) -> int:
        """Sequence number the next event will get (as of the last refresh)."""
        with self._mu:
            return self._segments[-1].next_seq if self._segments else 0

    def segment_count(self) -> int:
        with self._mu:
            return len(self._segments)

    def size_bytes(self) -> int:
        with self._mu:
            return sum(
                s.scanned if s.complete or not s.sealed else os.stat(s.path).st_size
                for s in self._segments
            )

    def _locate(self, seq: int) -> tuple[int, int] | None:
        """(segment index, frame index) of the frame holding *seq* or the first after."""
        bases = [s.base for s in self._segments]
        i = max(bisect.bisect_right(bases, seq) - 1, 0)
        while i < len(self._segments):
            seg = self._indexed(i)
            if seg.seqs and seq < seg.next_seq:
                k = max(bisect.bisect_right(seg.seqs, seq) - 1, 0)
                return i, k
            if seg.corrupt_at is not None:
                raise self._corrupt(seg, "read stream")
            i += 1
        return None

    def _frame_at(self, fd: int, seg: _Segment, k: int) -> Frame:
        pos = seg.positions[k]
        end = seg.positions[k + 1] if k + 1 < len(seg.positions) else seg.scanned
        frame = parse_frame(_pread_all(fd, end - pos, pos), 0, pos)
        if frame is None:  # it passed when indexed: the bytes changed since
            raise ChecksumError(
                "a frame of the stream fails its checksum",
                op="read stream",
                target=self.label,
                volume=seg.path,
                offset=pos,
            )
        return frame

    def read(self, from_seq: int, limit: int) -> list[tuple[int, str, int, bytes]]:
        """Up to *limit* events with seq >= *from_seq*: (seq, id, ts_ns, JSON bytes)."""
        out: list[tuple[int, str, int, bytes]] = []
        with self._mu:
            where = self._locate(from_seq)
            if where is None:
                return out
            i, k = where
            while i < len(self._segments) and len(out) < limit:
                seg = self._indexed(i)
                fd = os.open(seg.path, os.O_RDONLY)
                try:
                    while k < len(seg.seqs) and len(out) < limit:
                        frame = self._frame_at(fd, seg, k)
                        for j, (event_id, data) in enumerate(frame.events):
                            seq = frame.first_seq + j
                            if seq >= from_seq and len(out) < limit:
                                out.append((seq, event_id, frame.ts_ns, data))
                        k += 1
                    if seg.corrupt_at is not None and len(out) < limit:
                        if out:
                            return out  # what comes before the damage first
                        raise self._corrupt(seg, "read stream")
                finally:
                    os.close(fd)
                i, k = i + 1, 0
        return out

    def get(self, seqs: list[int]) -> dict[int, tuple[str, int, bytes]]:
        """The events with these sequence numbers: seq -> (id, ts_ns, JSON bytes)."""
        out: dict[int, tuple[str, int, bytes]] = {}
        with self._mu:
            for seq in sorted(seqs):
                if seq in out:
                    continue
                where = self._locate(seq)
                if where is None:
                    continue
                seg = self._segments[where[0]]
                fd = os.open(seg.path, os.O_RDONLY)
                try:
                    frame = self._frame_at(fd, seg, where[1])
                finally:
                    os.close(fd)
                for j, (event_id, data) in enumerate(frame.events):
                    out[frame.first_seq + j] = (event_id, frame.ts_ns, data)
        return {s: out[s] for s in seqs if s in out}

    # ---------------------------------------------------------------- appending
    def recover(self, check: Callable[[int, int], None] | None = None) -> None:
        """Index the log and cut a torn tail (done when a stream is opened).

        *check(first, end)* runs last, still under the exclusive lock, so that no
        publish can add events before it is done (the stream rewinds consumer groups
        that are ahead of what survived a power cut).
        """
        with self._mu:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._refresh_locked()
                if self._segments and self._segments[-1].torn_at is not None:
                    self._cut_tail(self._segments[-1])
                if check is not None:
                    check(self.first_seq(), self.end_seq())
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def append(self, batches: list[list[tuple[str, bytes]]], ts_ns: int) -> list[int]:
        """Append one frame per batch in one write, durably (per the sync policy).

        -> the first sequence number of each batch. Several publishes of one process
        share the write and its fsync (group commit); each stays one frame, whole or
        absent after a crash.
        """
        with self._mu:
            self._raise_sticky("publish")
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._refresh_locked()
                seg = self._segments[-1] if self._segments else None
                if seg is not None and seg.corrupt_at is not None:
                    raise self._corrupt(seg, "publish")  # never cut acknowledged events
                try:
                    if seg is not None and seg.torn_at is not None:
                        self._cut_tail(seg)
                    if seg is None or (seg.scanned >= self.segment_size and seg.seqs):
                        seg = self._roll(seg)
                except OSError as exc:
                    self._raise_sticky("publish")
                    raise StoreError(
                        f"cutting a torn tail or starting a new segment failed: {exc}",
                        op="publish",
                        target=self.label,
                    ) from None
                frames: list[Frame] = []
                chunks: list[bytes] = []
                pos, seq = seg.scanned, seg.next_seq
                for events in batches:
                    data = encode_frame(seq, ts_ns, events)
                    frames.append(Frame(pos, pos + len(data), seq, ts_ns, events))
                    chunks.append(data)
                    pos += len(data)
                    seq += len(events)
                try:
                    writer = self._writer_for(seg)
                    writer.write(b"".join(chunks))
                    self._appends += 1
                    self._sync(writer)
                except OSError as exc:
                    if self._writer is not None and self._write_seg is seg:
                        try:
                            self._writer.truncate(seg.scanned)
                        except OSError:
                            pass  # the next open cuts the torn tail
                    self._raise_sticky("publish")
                    raise StoreError(
                        f"appending to the stream failed: {exc}", op="publish", target=self.label
                    ) from None
                for frame in frames:
                    seg.add(frame)
                return [f.first_seq for f in frames]
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _roll(self, seg: _Segment | None) -> _Segment:
        """Seal *seg* and start the next segment.

        The sealed segment is fsynced by its path before the new name exists, whichever
        process wrote its unsynced tail (its own flusher may not have run yet): a power
        cut that keeps the new segment keeps every byte of the sealed one, so it never
        leaves a hole between segments, nor a torn frame inside a sealed one.
        """
        if seg is not None and self.sync != "none":
            if self._write_seg is seg and self._writer is not None:
                self._fsync(self._writer)  # one fsync covers what every process wrote
                self._synced()
            else:
                f = self._fs.open_append(seg.path)
                try:
                    self._fsync(f)
                finally:
                    f.close()
        self._finish_writer()
        return self._new_segment(seg.next_seq if seg else 0)

    def _cut_tail(self, seg: _Segment) -> None:
        if self._write_seg is seg and self._writer is not None:
            self._writer.truncate(seg.scanned)
            self._fsync(self._writer)
        else:
            f = self._fs.open_append(seg.path)
            try:
                f.truncate(seg.scanned)
                self._fsync(f)
            finally:
                f.close()
        seg.torn_at = None

    def _new_segment(self, base: int) -> _Segment:
        path = self._seg_path(base)
        self._fs.create(path).close()
        if self.sync != "none":
            # the new name; for the first segment also the folders made for the stream
            # (segments/, the stream's, streams/), so that a power cut keeps them all
            depth = 1 if self._segments else 4
            folder = self.seg_dir
            for _ in range(depth):
                try:
                    self._fs.sync_dir(folder)
                except OSError as exc:
                    self._failed_sync(exc)
                    raise
                folder = os.path.dirname(folder)
        seg = _Segment(path, base)
        self._segments.append(seg)
        return seg

    def _writer_for(self, seg: _Segment) -> WritableFile:
        if self._write_seg is not seg or self._writer is None:
            self._finish_writer()
            self._writer = self._fs.open_append(seg.path)
            self._write_seg = seg
        return self._writer

    def _finish_writer(self) -> None:
        """Close the append handle, fsyncing first what ``sync = "batch"`` left unsynced.

        If that fsync fails the window stays marked unsynced and the error sticky (it is
        not retried: a second fsync may report success for dropped pages).
        """
        writer = self._writer
        if writer is None:
            return
        try:
            if self._dirty_since is not None and self._sync_error is None:
                self._fsync(writer)
                self._synced()
        finally:
            with self._sync_mu:  # never under the flusher's fsync of this handle
                self._writer = None
                self._write_seg = None
                writer.close()

    # ---------------------------------------------------------------- fsync and its errors
    def _fsync(self, f: WritableFile) -> None:
        """fsync *f*; a failure is kept (sticky) before it is raised.

        Under ``_sync_mu``, like the flusher's: after a failed fsync (of any caller) no
        other one is tried, since it could report success for pages the kernel dropped.
        """
        with self._sync_mu:
            if self._sync_error is not None:
                raise OSError(errno.EIO, f"an earlier fsync failed: {self._sync_error}")
            try:
                f.sync()
            except OSError as exc:
                self._failed_sync(exc)
                raise

    def _failed_sync(self, exc: Exception) -> None:
        if self._sync_error is None:
            self._sync_error = exc
            log.error(
                "fsync of stream %s failed (kept; this handle refuses to write): %s",
                self.label,
                exc,
            )

    def _raise_sticky(self, op: str) -> None:
        if self._sync_error is not None:
            raise StoreError(
                f"an fsync of the stream failed ({self._sync_error}): events acknowledged"
                " since its last good fsync may not be on disk",
                op=op,
                target=self.label,
                hint="close and reopen the stream (recovery keeps what reached the disk),"
                " check the disk, and publish again what the log no longer holds",
            )

    def _synced(self) -> None:
        self._last_sync = time.monotonic()
        self._dirty_since = None

    def _sync(self, writer: WritableFile) -> None:
        if self.sync == "always":
            self._fsync(writer)
        elif self.sync == "batch":
            now = time.monotonic()
            if now - self._last_sync >= self.sync_interval:
                self._fsync(writer)
                self._synced()
            else:
                if self._dirty_since is None:
                    self._dirty_since = now
                self._wake_flusher()

    # ---------------------------------------------------------------- the batch flusher
    def _wake_flusher(self) -> None:
        """Make sure the flusher thread runs (it is started on the first unsynced append,
        and again in a child process after a fork) and tell it there is work."""
        if self._flusher is None or not self._flusher.is_alive():
            self._flusher = threading.Thread(
                target=self._flush_loop, name=f"lakeloop-stream-flush-{self.label}", daemon=True
            )
            self._flusher.start()
        self._flush_cv.notify_all()

    def _flush_loop(self) -> None:
        """fsync the last segment ``sync_interval`` after its oldest unsynced append.

        The fsync runs outside ``_mu`` (readers and publishers of the process go on);
        ``_sync_mu`` keeps the handle from being closed under it. Appends made while it
        ran are not known to be covered: they stay unsynced, for the next round.
        """
        while True:
            with self._mu:
                if self._closing:
                    return
                writer = self._writer
                if self._dirty_since is None or writer is None or self._sync_error is not None:
                    self._flush_cv.wait()
                    continue
                left = self._dirty_since + self.sync_interval - time.monotonic()
                if left > 0:
                    self._flush_cv.wait(left)
                    continue
                appends = self._appends
                started = time.monotonic()
            with self._sync_mu:
                if self._writer is not writer or self._sync_error is not None:
                    continue  # closed (and fsynced) by a roll or close, or failed, meanwhile
                try:
                    writer.sync()
                except Exception as exc:  # kept (sticky), raised by the next call
                    self._failed_sync(exc)
                    continue
            with self._mu:
                if self._writer is writer and self._sync_error is None:
                    if self._appends == appends:
                        self._synced()
                    else:
                        self._last_sync = self._dirty_since = started

    def flush(self) -> None:
        """fsync what ``sync = "batch"`` has not yet (tests, and a clean close)."""
        with self._mu:
            self._raise_sticky("flush stream")
            if self._writer is not None and self._dirty_since is not None:
                try:
                    self._fsync(self._writer)
                except OSError:
                    self._raise_sticky("flush stream")
                    raise
                self._synced()

    def unsynced(self) -> bool:
        """Whether appends of this process wait for the batch flusher's fsync."""
        with self._mu:
            return self._dirty_since is not None

    def close(self) -> None:
        """Close the handle; fsync what is unsynced, and raise a kept fsync error."""
        with self._mu:
            self._closing = True
            self._flush_cv.notify_all()
            try:
                self._finish_writer()
            except OSError:
                pass  # kept in _sync_error, raised below
            finally:
                if self._lock_fd >= 0:
                    os.close(self._lock_fd)
                    self._lock_fd = -1
                _LIVE.discard(self)
        flusher = self._flusher
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join(timeout=30)
        self._raise_sticky("close stream")
