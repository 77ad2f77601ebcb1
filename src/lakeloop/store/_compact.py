"""Compaction: copy live records out of sealed volumes into new ones, then swap.

The protocol (every step is safe to crash in):

1. Register each output volume as ``compacting`` (committed before its file exists).
2. Copy, without the writer lock: writers and readers go on. Live records (current or
   pinned) are copied in physical order, optionally compressed with zstd and a dictionary
   trained on this batch of records; tombstones are kept while an older version of their
   key may survive elsewhere. Outputs are fsynced.
3. Swap in one SQLite transaction under the writer lock: rows still pointing at the old
   location move to the new one (a row overwritten meanwhile is left alone), outputs
   become ``sealed`` and inputs ``retired``.
4. Delete retired files, then their rows.

After a crash, ``compacting`` volumes are deleted (nothing points at them) and ``retired``
ones too (nothing points at them either). Readers never block: a reader that looked an
object up just before the swap still finds the old file, or retries its lookup.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import zstandard

from lakeloop.errors import InsufficientSpace, StoreError
from lakeloop.store import _record as rec

if TYPE_CHECKING:
    from lakeloop.store._fs import WritableFile
    from lakeloop.store.namespace import Namespace

__all__ = ["CompactionReport", "cleanup_leftovers", "compact", "compact_volumes", "plan"]

_DICT_SIZE = 16 * 1024
_DICT_SAMPLE_BYTES = 4 << 20
_DICT_MAX_RECORD = 16 * 1024
_DICT_MIN_SAMPLES = 64
_WRITE_BUFFER = 4 << 20


@dataclass
class CompactionReport:
    """What one compaction did. ``reclaimed_bytes`` and ``compression_ratio`` derive."""

    namespace: str
    skipped: str | None = None
    reason: str = ""
    volumes_in: list[int] = field(default_factory=list)
    volumes_out: list[int] = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0
    records_copied: int = 0
    records_dropped: int = 0
    tombstones_kept: int = 0
    compressed_records: int = 0
    logical_bytes: int = 0
    stored_bytes: int = 0
    dictionary_bytes: int = 0
    seconds: float = 0.0

    @property
    def reclaimed_bytes(self) -> int:
        return self.bytes_before - self.bytes_after

    @property
    def compression_ratio(self) -> float:
        """Logical bytes of copied data over the bytes stored for them (1.0: none)."""
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 1.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reclaimed_bytes"] = self.reclaimed_bytes
        d["compression_ratio"] = round(self.compression_ratio, 3)
        return d


def plan(ns: Namespace, *, force: bool) -> tuple[list[dict[str, Any]], str]:
    """Which sealed volumes to compact now, and why (empty list: nothing to do)."""
    vols = [v for v in ns._index.volumes() if v["state"] == "sealed"]
    volume_size = ns.setting("volume_size")
    compress = ns.setting("compression") != "none"
    now = time.time_ns()
    chosen: dict[int, dict[str, Any]] = {}
    reasons: set[str] = set()

    def garbage(v: dict[str, Any]) -> float:
        body = max(v["size"] - rec.VOLUME_HEADER_SIZE, 1)
        return max(0.0, 1.0 - v["live_bytes"] / body)

    threshold = ns.setting("compaction_garbage_ratio")
    for v in vols:
        g = garbage(v)
        if (force and g > 0) or (not force and g >= threshold):
            chosen[v["id"]] = v
            reasons.add("garbage")
    small = [v for v in vols if v["size"] < volume_size // 2]
    if len(small) >= (2 if force else max(ns.setting("compaction_small_volumes"), 2)):
        for v in small:
            chosen[v["id"]] = v
        reasons.add("small volumes")
    if compress:
        age_ns = int(ns.setting("compaction_age") * 1e9)
        for v in vols:
            if v["compressed"] or v["live_count"] == 0:
                continue
            if force or (v["sealed_ns"] and now - v["sealed_ns"] >= age_ns):
                chosen[v["id"]] = v
                reasons.add("compression")
    picked: list[dict[str, Any]] = []
    budget = ns._settings["compaction_max_bytes"]
    total = 0
    for vid in sorted(chosen):
        v = chosen[vid]
        if picked and total + v["live_bytes"] > budget:
            break
        picked.append(v)
        total += v["live_bytes"]
    return picked, ", ".join(sorted(reasons))


ORPHAN_BLOB_AGE = 600.0  # seconds without a write after which an unreferenced blob is residue


def orphan_blobs(ns: Namespace) -> list[str]:
    """Blob files no index row names, untouched for ``ORPHAN_BLOB_AGE``: what a put killed
    between writing its blob and committing its record leaves. A blob being written is
    touched by every chunk, and a written one is committed within ``lock_timeout``."""
    if not os.path.isdir(ns._blob_dir):
        return []
    age = max(ORPHAN_BLOB_AGE, 2 * ns._settings["lock_timeout"])
    referenced = ns._index.referenced_blobs()
    referenced |= {r[0] for r in ns._index.reader.execute("SELECT name FROM dead_blobs")}
    now = time.time()
    return [
        e.path
        for e in os.scandir(ns._blob_dir)
        if e.name not in referenced and now - e.stat().st_mtime >= age
    ]


def cleanup_leftovers(ns: Namespace) -> int:
    """Delete what crashes left: volumes of a crashed compaction (``compacting`` or
    ``retired``) and orphan blobs. -> how many were deleted."""
    removed = 0
    candidates = orphan_blobs(ns)
    if candidates:
        with ns._writing("compact"):  # no commit can name one of them meanwhile
            still = set(orphan_blobs(ns))
            for path in candidates:
                if path in still:
                    try:
                        ns._fs.unlink(path)
                        removed += 1
                    except FileNotFoundError:
                        pass
    leftovers = [v for v in ns._index.volumes() if v["state"] in ("compacting", "retired")]
    if not leftovers:
        return removed
    for v in leftovers:
        try:
            ns._fs.unlink(ns._vol_path(v["id"]))
        except FileNotFoundError:
            pass
    ns._fs.sync_dir(ns._vol_dir)
    with ns._writing("compact"), ns._index.write() as w:
        for v in leftovers:
            w.remove_volume(v["id"])
    return removed + len(leftovers)


def compact(ns: Namespace, *, force: bool = True) -> CompactionReport:
    """Run one compaction pass on *ns* (see the module docstring for the protocol)."""
    started = time.monotonic()
    report = CompactionReport(namespace=ns.name)
    ns._compact_lock.acquire(max(ns._settings["lock_timeout"], 600.0), op="compact")
    try:
        cleanup_leftovers(ns)
        if force:
            _seal_active_if_used(ns)
        picked, reason = plan(ns, force=force)
        report.reason = reason
        if not picked or (len(picked) == 1 and not _worth_rewriting(ns, picked[0])):
            report.skipped = "no volume crosses a compaction threshold"
            return report
        _run(ns, picked, report)
        return report
    finally:
        report.seconds = round(time.monotonic() - started, 3)
        ns._compact_lock.release()


def compact_volumes(ns: Namespace, ids: list[int]) -> CompactionReport:
    """Rewrite exactly these volumes (fsck uses it to drop damaged stretches)."""
    started = time.monotonic()
    report = CompactionReport(namespace=ns.name, reason="repair")
    ns._compact_lock.acquire(max(ns._settings["lock_timeout"], 600.0), op="compact")
    try:
        if ns._active_id in ids or any(
            v["state"] == "active" and v["id"] in ids for v in ns._index.volumes()
        ):
            _seal_active_if_used(ns)
        picked = [v for v in ns._index.volumes() if v["id"] in ids and v["state"] == "sealed"]
        if picked:
            _run(ns, picked, report)
        return report
    finally:
        report.seconds = round(time.monotonic() - started, 3)
        ns._compact_lock.release()


def _worth_rewriting(ns: Namespace, v: dict[str, Any]) -> bool:
    body = max(v["size"] - rec.VOLUME_HEADER_SIZE, 1)
    has_garbage = v["live_bytes"] < body
    wants_compression = ns.setting("compression") != "none" and not v["compressed"]
    return has_garbage or wants_compression


def _seal_active_if_used(ns: Namespace) -> None:
    with ns._writing("compact"):
        assert ns._active is not None
        if ns._active.size() <= rec.VOLUME_HEADER_SIZE:
            return
        with ns._index.write() as w:
            ns._seal_active(w)


class _Output:
    """The output volumes of one compaction, rolled at ``volume_size``."""

    def __init__(self, ns: Namespace, dict_bytes: bytes | None) -> None:
        self.ns = ns
        self.dict_bytes = dict_bytes
        self.files: list[dict[str, Any]] = []
        self.cur: WritableFile | None = None
        self.buf: list[bytes] = []
        self.buf_len = 0
        self.pos = 0

    def _allocate(self) -> None:
        ns = self.ns
        with ns._writing("compact"), ns._index.write(full_sync=True) as w:
            vol = w.get_state("next_vol", 1)
            w.set_state(next_vol=vol + 1)
            w.add_volume(vol, "compacting", time.time_ns(), rec.VOLUME_HEADER_SIZE)
        path = ns._vol_path(vol)
        f = ns._fs.create(path)
        self.cur = f
        self.files.append(
            {
                "id": vol,
                "file": f,
                "min": None,
                "max": None,
                "dict_off": None,
                "dict_len": 0,
                "compressed": 0,
                "size": 0,
            }
        )
        self.buf = [rec.encode_volume_header(vol, time.time_ns())]
        self.pos = rec.VOLUME_HEADER_SIZE
        self.buf_len = self.pos
        if self.dict_bytes:
            d = rec.encode_record(
                seq=0, key=b"", data=self.dict_bytes, flags=rec.DICT, ts_ns=time.time_ns()
            )
            self.files[-1]["dict_off"] = self.pos
            self.files[-1]["dict_len"] = len(d)
            self._append(d)

    def _append(self, data: bytes) -> int:
        off = self.pos
        self.buf.append(data)
        self.buf_len += len(data)
        self.pos += len(data)
        if self.buf_len >= _WRITE_BUFFER:
            self._drain()
        return off

    def _drain(self) -> None:
        if self.buf and self.cur is not None:
            self.cur.write(b"".join(self.buf))
        self.buf = []
        self.buf_len = 0

    def add(self, data: bytes, seq: int, compressed: bool) -> tuple[int, int]:
        if self.cur is None or self.pos + len(data) > self.ns.setting("volume_size"):
            self.finish_current()
            self._allocate()
        off = self._append(data)
        f = self.files[-1]
        f["min"] = seq if f["min"] is None else min(f["min"], seq)
        f["max"] = seq if f["max"] is None else max(f["max"], seq)
        if compressed:
            f["compressed"] = 1
        return f["id"], off

    def finish_current(self) -> None:
        if self.cur is None:
            return
        self._drain()
        if self.ns.setting("sync") != "none":
            self.cur.sync()
        self.files[-1]["size"] = self.cur.size()
        self.cur.close()
        self.cur = None

    def finish(self) -> None:
        self.finish_current()
        if self.files and self.ns.setting("sync") != "none":
            self.ns._fs.sync_dir(self.ns._vol_dir)

    def abandon(self) -> None:
        if self.cur is not None:
            try:
                self.cur.close()
            except OSError:
                pass
            self.cur = None
        for f in self.files:
            try:
                os.unlink(self.ns._vol_path(f["id"]))
            except OSError:
                pass
        try:
            with self.ns._writing("compact"), self.ns._index.write() as w:
                for f in self.files:
                    w.remove_volume(f["id"])
        except Exception:
            pass  # cleanup_leftovers retries at the next pass


def _payload(ns: Namespace, vol: int, r: rec.Record) -> bytes:
    if r.flags & rec.ZSTD:
        return ns._decompressor(vol).decompress(r.data, max_output_size=r.size)
    return r.data


def _points_into(conn: sqlite3.Connection, vol: int, start: int, end: int) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM objects WHERE vol = ?1 AND off >= ?2 AND off < ?3)"
        " OR EXISTS (SELECT 1 FROM versions WHERE vol = ?1 AND off >= ?2 AND off < ?3)",
        (vol, start, end),
    ).fetchone()
    return bool(row[0])


def _train_dictionary(ns: Namespace, vols: list[int], live_in: Any) -> bytes | None:
    samples: list[bytes | bytearray | memoryview] = []
    total = 0
    for vol in vols:
        fd = os.open(ns._vol_path(vol), os.O_RDONLY)
        try:
            for r in rec.scan_volume(fd):
                if isinstance(r, rec.Corrupt) or r.flags & (rec.TOMBSTONE | rec.BLOB | rec.DICT):
                    continue
                if r.size > _DICT_MAX_RECORD or r.seq not in live_in(vol):
                    continue
                data = _payload(ns, vol, r)
                samples.append(data)
                total += len(data)
                if total >= _DICT_SAMPLE_BYTES:
                    break
        finally:
            os.close(fd)
        if total >= _DICT_SAMPLE_BYTES:
            break
    if len(samples) < _DICT_MIN_SAMPLES or total < 4 * _DICT_SIZE:
        return None
    level = ns._settings["compression_level"]
    try:
        d = zstandard.train_dictionary(_DICT_SIZE, samples, level=level)
    except zstandard.ZstdError:
        return None
    # Keep the dictionary only if it pays for itself on the samples.
    plain = zstandard.ZstdCompressor(level=level)
    with_dict = zstandard.ZstdCompressor(level=level, dict_data=d)
    size_plain = sum(min(len(plain.compress(x)), len(x)) for x in samples)
    size_dict = sum(min(len(with_dict.compress(x)), len(x)) for x in samples)
    if size_dict + len(d.as_bytes()) >= size_plain:
        return None
    return bytes(d.as_bytes())


def _run(ns: Namespace, picked: list[dict[str, Any]], report: CompactionReport) -> None:
    vol_ids = [v["id"] for v in picked]
    report.volumes_in = vol_ids
    report.bytes_before = sum(v["size"] for v in picked)
    needed = sum(v["live_bytes"] for v in picked) + ns._settings["compaction_free_margin"]
    free = ns._fs.disk_free(ns.root)
    if free < needed:
        raise InsufficientSpace(
            f"compaction needs {needed} bytes free, {free} are", op="compact", target=ns.name
        )
    outside = [
        v["min_seq"]
        for v in ns._index.volumes()
        if v["id"] not in vol_ids
        and v["state"] in ("active", "sealed")
        and v["min_seq"] is not None
    ]
    outside_min = min(outside) if outside else None

    conn = sqlite3.connect(ns._index_path, isolation_level=None, timeout=60.0)
    conn.execute("PRAGMA busy_timeout=60000")
    conn.execute(
        "CREATE TEMP TABLE moves(seq INTEGER PRIMARY KEY, vol INTEGER, off INTEGER,"
        " len INTEGER, flags INTEGER)"
    )

    live_sets: dict[int, set[int]] = {}

    def live_in(vol: int) -> set[int]:
        """Versions (current or pinned) stored in *vol*, read once per volume: one query
        instead of one per record; bounded by what one volume holds."""
        if vol not in live_sets:
            live_sets.clear()
            live_sets[vol] = {
                row[0]
                for row in conn.execute(
                    "SELECT seq FROM objects WHERE vol = ?1 UNION ALL "
                    "SELECT seq FROM versions WHERE vol = ?1",
                    (vol,),
                )
            }
        return live_sets[vol]

    def latest_tombstone(key: bytes, seq: int) -> bool:
        row = conn.execute("SELECT seq FROM deleted WHERE key = ?", (key,)).fetchone()
        return row is not None and row[0] == seq

    compress = ns.setting("compression") != "none"
    level = ns._settings["compression_level"]
    min_saving = ns._settings["compression_min_saving"]
    dict_bytes = (
        _train_dictionary(ns, vol_ids, live_in)
        if compress and ns.setting("compression_dict")
        else None
    )
    report.dictionary_bytes = len(dict_bytes) if dict_bytes else 0
    cctx = None
    if compress:
        cctx = zstandard.ZstdCompressor(
            level=level,
            dict_data=zstandard.ZstdCompressionDict(dict_bytes) if dict_bytes else None,
            write_content_size=True,
        )
    out = _Output(ns, dict_bytes)
    moves: list[tuple[int, int, int, int, int]] = []
    try:
        for vol in vol_ids:
            fd = os.open(ns._vol_path(vol), os.O_RDONLY)
            try:
                for r in rec.scan_volume(fd):
                    if isinstance(r, rec.Corrupt):
                        # A damaged stretch nobody points into is dropped; one that holds a
                        # live object cannot be copied, and deleting it would hide the
                        # damage, so stop and let fsck report (and repair) it first.
                        if not _points_into(conn, vol, r.offset, r.end):
                            report.records_dropped += 1
                            continue
                        raise StoreError(
                            f"volume {vol} is damaged at offset {r.offset} ({r.reason})",
                            op="compact",
                            target=ns.name,
                            hint="run `lakeloop fsck --repair` first",
                        )
                    if r.flags & rec.DICT:
                        continue
                    if r.is_tombstone:
                        keep = (
                            outside_min is not None
                            and outside_min < r.seq
                            and latest_tombstone(r.key, r.seq)
                        )
                        if keep:
                            out.add(
                                rec.encode_record(
                                    seq=r.seq, key=r.key, flags=rec.TOMBSTONE, ts_ns=r.ts_ns
                                ),
                                r.seq,
                                False,
                            )
                            report.tombstones_kept += 1
                        else:
                            report.records_dropped += 1
                        continue
                    if r.seq not in live_in(vol):
                        report.records_dropped += 1
                        continue
                    flags = r.flags
                    if flags & rec.BLOB:
                        data = r.data
                    else:
                        data = _payload(ns, vol, r)
                        flags &= ~rec.ZSTD
                        report.logical_bytes += len(data)
                        if cctx is not None and len(data) >= 32:
                            packed = cctx.compress(data)
                            if len(packed) <= len(data) * (1 - min_saving):
                                data = packed
                                flags |= rec.ZSTD
                                report.compressed_records += 1
                        report.stored_bytes += len(data)
                    encoded = rec.encode_record(
                        seq=r.seq,
                        key=r.key,
                        data=data,
                        meta=r.meta,
                        flags=flags,
                        ts_ns=r.ts_ns,
                        size=r.size,
                        md5=r.md5,
                    )
                    new_vol, new_off = out.add(encoded, r.seq, bool(flags & rec.ZSTD))
                    moves.append((r.seq, new_vol, new_off, len(encoded), flags))
                    report.records_copied += 1
                    if len(moves) >= 2000:
                        conn.executemany("INSERT OR REPLACE INTO moves VALUES (?,?,?,?,?)", moves)
                        moves = []
            finally:
                os.close(fd)
        if moves:
            conn.executemany("INSERT OR REPLACE INTO moves VALUES (?,?,?,?,?)", moves)
        out.finish()
    except OSError as exc:
        out.abandon()
        conn.close()
        if exc.errno == errno.ENOSPC:
            raise InsufficientSpace(
                "disk full while compacting; nothing was changed", op="compact", target=ns.name
            ) from None
        raise StoreError(
            f"compaction failed: {exc}; nothing was changed", op="compact", target=ns.name
        ) from None
    except BaseException:
        out.abandon()
        conn.close()
        raise
    report.volumes_out = [f["id"] for f in out.files]

    # 3. swap
    try:
        with ns._writing("compact"):
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "UPDATE objects SET vol = m.vol, off = m.off, len = m.len, flags = m.flags"
                    " FROM moves AS m WHERE objects.seq = m.seq"
                )
                conn.execute(
                    "UPDATE versions SET vol = m.vol, off = m.off, len = m.len, flags = m.flags"
                    " FROM moves AS m WHERE versions.seq = m.seq"
                )
                now = time.time_ns()
                for f in out.files:
                    conn.execute(
                        "UPDATE volumes SET state = 'sealed', size = ?, min_seq = ?, max_seq = ?,"
                        " sealed_ns = ?, compressed = ?, dict_off = ?, live_bytes = live_bytes + ?"
                        " WHERE id = ?",
                        # the dictionary is live for as long as the volume is
                        (
                            f["size"],
                            f["min"],
                            f["max"],
                            now,
                            f["compressed"],
                            f["dict_off"],
                            f["dict_len"],
                            f["id"],
                        ),
                    )
                conn.executemany(
                    "UPDATE volumes SET state = 'retired' WHERE id = ?", [(v,) for v in vol_ids]
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    except BaseException:
        out.abandon()
        conn.close()
        raise
    conn.close()
    report.bytes_after = sum(f["size"] for f in out.files)

    # 4. retire
    for vol in vol_ids:
        ns._retire_fd(vol)
        try:
            ns._fs.unlink(ns._vol_path(vol))
        except FileNotFoundError:
            pass
    ns._fs.sync_dir(ns._vol_dir)
    with ns._writing("compact"), ns._index.write() as w:
        for vol in vol_ids:
            w.remove_volume(vol)
