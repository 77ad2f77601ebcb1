"""Rebuild a namespace's index from its volumes alone (volumes are the truth).

Every volume file is scanned in order; each verified record goes into a scratch table;
the newest record of each key (by sequence number) decides whether the key exists. Pins
are carried over from the old index when it can still be read. The new index is built
beside the old one and renamed over it, so a crash leaves one or the other, whole.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from lakeloop.store import _record as rec
from lakeloop.store._fs import sync_dir
from lakeloop.store._index import SQLiteIndex

if TYPE_CHECKING:
    from lakeloop.store.namespace import Namespace

__all__ = ["rebuild_index"]


def _old_pins(path: str) -> list[tuple[str, int]]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return list(conn.execute("SELECT holder, seq FROM pins"))
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def rebuild_index(ns: Namespace, *, reason: str) -> dict[str, Any]:
    """Recreate ``index.sqlite`` of *ns* from its volume files (caller holds the writer lock)."""
    started = time.monotonic()
    index_path = os.path.join(ns.root, "index.sqlite")
    tmp_path = os.path.join(ns.root, "index.rebuild.sqlite")
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(tmp_path + suffix)
        except FileNotFoundError:
            pass
    pins = _old_pins(index_path)
    new = SQLiteIndex(tmp_path)
    conn = new._writer
    conn.execute(
        "CREATE TABLE scan(seq INTEGER PRIMARY KEY, key BLOB, vol INTEGER, off INTEGER,"
        " len INTEGER, size INTEGER, md5 BLOB, flags INTEGER, mtime INTEGER, meta TEXT, blob TEXT)"
    )
    vol_dir = os.path.join(ns.root, "volumes")
    os.makedirs(vol_dir, exist_ok=True)
    names = sorted(n for n in os.listdir(vol_dir) if n.endswith(".vol"))
    corrupt: list[dict[str, Any]] = []
    records = 0
    vols: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        path = os.path.join(vol_dir, name)
        last = i == len(names) - 1
        fd = os.open(path, os.O_RDONLY)
        try:
            try:
                vol, created = rec.read_volume_header(os.pread(fd, rec.VOLUME_HEADER_SIZE, 0))
            except rec.RecordError as exc:
                corrupt.append({"volume": path, "offset": 0, "reason": str(exc)})
                continue
            size = os.fstat(fd).st_size
            info = {
                "id": vol,
                "created": created,
                "size": size,
                "min": None,
                "max": None,
                "compressed": 0,
                "dict_off": None,
                "dict_len": 0,
            }
            batch: list[tuple[Any, ...]] = []
            good_end = rec.VOLUME_HEADER_SIZE
            for item in rec.scan_volume(fd):
                if isinstance(item, rec.Corrupt):
                    corrupt.append({"volume": path, "offset": item.offset, "reason": item.reason})
                    continue
                good_end = item.offset + item.length
                if item.flags & rec.DICT:
                    info["dict_off"] = item.offset
                    info["dict_len"] = item.length
                    continue
                if item.flags & rec.ZSTD:
                    info["compressed"] = 1
                records += 1
                info["min"] = item.seq if info["min"] is None else min(info["min"], item.seq)
                info["max"] = item.seq if info["max"] is None else max(info["max"], item.seq)
                blob = json.loads(item.data)["file"] if item.flags & rec.BLOB else None
                batch.append(
                    (
                        item.seq,
                        item.key,
                        vol,
                        item.offset,
                        item.length,
                        item.size,
                        item.md5,
                        item.flags,
                        item.ts_ns,
                        item.meta.decode() if item.meta else None,
                        blob,
                    )
                )
                if len(batch) >= 5000:
                    conn.executemany(
                        "INSERT OR REPLACE INTO scan VALUES (?,?,?,?,?,?,?,?,?,?,?)", batch
                    )
                    batch = []
            if batch:
                conn.executemany(
                    "INSERT OR REPLACE INTO scan VALUES (?,?,?,?,?,?,?,?,?,?,?)", batch
                )
            if last and good_end < size:
                # A torn tail on the newest volume is an unacknowledged write: cut it.
                with open(path, "r+b") as f:
                    f.truncate(good_end)
                    os.fsync(f.fileno())
                info["size"] = good_end
            vols.append(info)
        finally:
            os.close(fd)
    conn.execute("BEGIN")
    for j, v in enumerate(vols):
        state = "active" if j == len(vols) - 1 else "sealed"
        conn.execute(
            "INSERT INTO volumes(id, state, size, min_seq, max_seq, created_ns, sealed_ns,"
            " compressed, dict_off, live_bytes) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                v["id"],
                state,
                v["size"],
                v["min"],
                v["max"],
                v["created"],
                None if state == "active" else time.time_ns(),
                v["compressed"],
                v["dict_off"],
                v["dict_len"],
            ),
        )
    conn.execute("CREATE INDEX scan_key ON scan(key, seq)")
    conn.execute("CREATE TEMP TABLE latest AS SELECT key, max(seq) AS seq FROM scan GROUP BY key")
    conn.execute(
        "INSERT INTO objects(seq, key, vol, off, len, size, md5, flags, mtime, meta, blob)"
        " SELECT s.seq, s.key, s.vol, s.off, s.len, s.size, s.md5, s.flags,"
        " s.mtime, s.meta, s.blob FROM scan s JOIN latest l ON s.seq = l.seq"
        " WHERE (s.flags & 1) = 0 ORDER BY s.key"
    )
    conn.execute(
        "INSERT INTO deleted SELECT s.key, s.seq FROM scan s JOIN latest l ON s.seq = l.seq"
        " WHERE (s.flags & 1) = 1"
    )
    conn.executemany("INSERT OR IGNORE INTO pins(holder, seq) VALUES (?, ?)", pins)
    conn.execute(
        "INSERT INTO versions SELECT s.seq, s.key, s.vol, s.off, s.len, s.size, s.md5, s.flags,"
        " s.mtime, s.meta, s.blob FROM scan s WHERE (s.flags & 1) = 0"
        " AND s.seq IN (SELECT seq FROM pins) AND s.seq NOT IN (SELECT seq FROM objects)"
    )
    max_seq = conn.execute("SELECT coalesce(max(seq), 0) FROM scan").fetchone()[0]
    old_next, old_next_vol = 1, 1
    try:
        ro = sqlite3.connect(f"file:{index_path}?mode=ro", uri=True)
        try:
            got = dict(ro.execute("SELECT k, v FROM state"))
            old_next = int(got.get("next_seq", 1))
            old_next_vol = int(got.get("next_vol", 1))
        finally:
            ro.close()
    except sqlite3.Error:
        pass
    max_vol = max((v["id"] for v in vols), default=0)
    active = vols[-1] if vols else None
    new_state = {
        "next_seq": max(max_seq + 1, old_next),
        "next_vol": max(max_vol + 1, old_next_vol),
        "active_vol": active["id"] if active else 0,
        "hwm": active["size"] if active else rec.VOLUME_HEADER_SIZE,
    }
    conn.executemany("INSERT OR REPLACE INTO state(k, v) VALUES (?, ?)", list(new_state.items()))
    conn.execute("DROP TABLE scan")
    conn.execute("COMMIT")
    objects = conn.execute("SELECT count(*) FROM objects").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    new.close()
    # Swap: the old WAL must go first, or SQLite would replay it into the new file.
    for suffix in ("-wal", "-shm"):
        try:
            os.unlink(index_path + suffix)
        except FileNotFoundError:
            pass
    os.replace(tmp_path, index_path)
    sync_dir(ns.root)
    return {
        "namespace": ns.name,
        "reason": reason,
        "volumes": len(vols),
        "records": records,
        "objects": objects,
        "corrupt": corrupt,
        "pins": len(pins),
        "seconds": round(time.monotonic() - started, 3),
    }
