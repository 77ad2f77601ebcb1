"""The per-namespace index: key -> (volume, offset, length) plus what ``stat`` returns.

SQLite in WAL mode is the default backend: readers in any number of processes never
block the writer or each other, and the index lives on disk, so process memory does not
grow with the number of objects. The index is a cache of the volumes (they are the
truth): ``rebuild`` recreates it from them alone.

Space accounting (live bytes per volume, the namespace's totals), the writer's position
(``next_seq``, ``hwm``) and the protection of pinned versions are kept by triggers, so a
group commit of puts is one statement (one GIL release, one implicit transaction), and
nothing can drift from the rows. Bulk loads mark their rows with flag bit 256 (``BULK``):
the per-row triggers skip them and the loader adds the totals once per chunk.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

__all__ = ["Index", "Row", "SQLiteIndex"]

_COLUMNS = "seq, key, vol, off, len, size, md5, flags, mtime, meta, blob"


class Row(NamedTuple):
    seq: int
    key: bytes
    vol: int
    off: int
    len: int
    size: int
    md5: bytes
    flags: int
    mtime: int
    meta: str | None
    blob: str | None


_SCHEMA = """
-- Keyed by the object key itself (WITHOUT ROWID): a lookup walks one B-tree, so a cold
-- read costs one index leaf and one record, not a key-index leaf and a table leaf too.
CREATE TABLE IF NOT EXISTS objects(
    key BLOB PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    vol INTEGER NOT NULL, off INTEGER NOT NULL, len INTEGER NOT NULL,
    size INTEGER NOT NULL, md5 BLOB NOT NULL, flags INTEGER NOT NULL,
    mtime INTEGER NOT NULL, meta TEXT, blob TEXT) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_vol ON objects(vol, off);
CREATE TABLE IF NOT EXISTS versions(
    seq INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    vol INTEGER NOT NULL, off INTEGER NOT NULL, len INTEGER NOT NULL,
    size INTEGER NOT NULL, md5 BLOB NOT NULL, flags INTEGER NOT NULL,
    mtime INTEGER NOT NULL, meta TEXT, blob TEXT);
CREATE INDEX IF NOT EXISTS versions_vol ON versions(vol);
CREATE TABLE IF NOT EXISTS deleted(key BLOB PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deleted_seq ON deleted(seq);
CREATE TABLE IF NOT EXISTS pins(
    holder TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(holder, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pins_seq ON pins(seq);
CREATE TABLE IF NOT EXISTS volumes(
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    live_bytes INTEGER NOT NULL DEFAULT 0,
    live_count INTEGER NOT NULL DEFAULT 0,
    min_seq INTEGER, max_seq INTEGER,
    created_ns INTEGER NOT NULL, sealed_ns INTEGER,
    compressed INTEGER NOT NULL DEFAULT 0,
    dict_off INTEGER);
CREATE TABLE IF NOT EXISTS dead_blobs(name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO state(k, v) VALUES ('bytes', 0), ('count', 0);

CREATE TRIGGER IF NOT EXISTS objects_ins AFTER INSERT ON objects
WHEN (NEW.flags & 256) = 0 BEGIN
    DELETE FROM deleted WHERE key = NEW.key;
    UPDATE volumes SET live_bytes = live_bytes + NEW.len, live_count = live_count + 1
        WHERE id = NEW.vol;
    UPDATE state SET v = CASE k WHEN 'bytes' THEN v + NEW.size WHEN 'count' THEN v + 1
        WHEN 'next_seq' THEN max(v, NEW.seq + 1) ELSE max(v, NEW.off + NEW.len) END
        WHERE k IN ('bytes', 'count', 'next_seq', 'hwm');
END;
CREATE TRIGGER IF NOT EXISTS objects_del AFTER DELETE ON objects BEGIN
    UPDATE volumes SET live_bytes = live_bytes - OLD.len, live_count = live_count - 1
        WHERE id = OLD.vol;
    UPDATE state SET v = CASE k WHEN 'bytes' THEN v - OLD.size ELSE v - 1 END
        WHERE k IN ('bytes', 'count');
    INSERT INTO versions SELECT OLD.seq, OLD.key, OLD.vol, OLD.off, OLD.len, OLD.size,
        OLD.md5, OLD.flags & 255, OLD.mtime, OLD.meta, OLD.blob
        WHERE EXISTS (SELECT 1 FROM pins WHERE seq = OLD.seq);
    INSERT OR IGNORE INTO dead_blobs SELECT OLD.blob WHERE OLD.blob IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM pins WHERE seq = OLD.seq);
END;
CREATE TRIGGER IF NOT EXISTS objects_upd_old AFTER UPDATE ON objects BEGIN
    UPDATE volumes SET live_bytes = live_bytes - OLD.len, live_count = live_count - 1
        WHERE id = OLD.vol;
    UPDATE state SET v = CASE k WHEN 'bytes' THEN v - OLD.size ELSE v - 1 END
        WHERE k IN ('bytes', 'count');
    INSERT INTO versions SELECT OLD.seq, OLD.key, OLD.vol, OLD.off, OLD.len, OLD.size,
        OLD.md5, OLD.flags & 255, OLD.mtime, OLD.meta, OLD.blob
        WHERE OLD.seq != NEW.seq AND EXISTS (SELECT 1 FROM pins WHERE seq = OLD.seq);
    INSERT OR IGNORE INTO dead_blobs SELECT OLD.blob WHERE OLD.blob IS NOT NULL
        AND OLD.seq != NEW.seq AND NOT EXISTS (SELECT 1 FROM pins WHERE seq = OLD.seq);
END;
CREATE TRIGGER IF NOT EXISTS objects_upd_new AFTER UPDATE ON objects
WHEN (NEW.flags & 256) = 0 BEGIN
    UPDATE volumes SET live_bytes = live_bytes + NEW.len, live_count = live_count + 1
        WHERE id = NEW.vol;
    -- an overwrite advances the writer's position; a move by compaction (same seq) does not
    UPDATE state SET v = CASE k WHEN 'bytes' THEN v + NEW.size WHEN 'count' THEN v + 1
        WHEN 'next_seq' THEN max(v, NEW.seq + 1) ELSE max(v, NEW.off + NEW.len) END
        WHERE k IN ('bytes', 'count') OR (OLD.seq != NEW.seq AND k IN ('next_seq', 'hwm'));
END;
CREATE TRIGGER IF NOT EXISTS versions_ins AFTER INSERT ON versions BEGIN
    UPDATE volumes SET live_bytes = live_bytes + NEW.len, live_count = live_count + 1
        WHERE id = NEW.vol;
END;
CREATE TRIGGER IF NOT EXISTS versions_del AFTER DELETE ON versions BEGIN
    UPDATE volumes SET live_bytes = live_bytes - OLD.len, live_count = live_count - 1
        WHERE id = OLD.vol;
    INSERT OR IGNORE INTO dead_blobs SELECT OLD.blob WHERE OLD.blob IS NOT NULL;
END;
CREATE TRIGGER IF NOT EXISTS versions_upd AFTER UPDATE OF vol, len ON versions BEGIN
    UPDATE volumes SET live_bytes = live_bytes - OLD.len, live_count = live_count - 1
        WHERE id = OLD.vol;
    UPDATE volumes SET live_bytes = live_bytes + NEW.len, live_count = live_count + 1
        WHERE id = NEW.vol;
END;
"""

BULK = 256
_ON_CONFLICT = """
ON CONFLICT(key) DO UPDATE SET seq = excluded.seq, vol = excluded.vol, off = excluded.off,
    len = excluded.len, size = excluded.size, md5 = excluded.md5, flags = excluded.flags,
    mtime = excluded.mtime, meta = excluded.meta, blob = excluded.blob
"""
_ROW_MARKS = "(?,?,?,?,?,?,?,?,?,?,?)"
_MULTI_MAX = 256  # rows per multi-row statement (11 parameters each)


def _multi_upsert_sql(n: int) -> str:
    return f"INSERT INTO objects({_COLUMNS}) VALUES {','.join([_ROW_MARKS] * n)} {_ON_CONFLICT}"


def upsert_rows(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Upsert *rows* with as few statements as possible (one per 256 rows), in order."""
    for i in range(0, len(rows), _MULTI_MAX):
        part = rows[i : i + _MULTI_MAX]
        flat = [v for row in part for v in row]
        conn.execute(_multi_upsert_sql(len(part)), flat)


class Index(ABC):
    """What the store needs from an index backend (SQLite now; PostgreSQL later).

    Reads (``lookup``, ``list``, ...) may run in any thread and any process at once.
    Writes happen only in ``write()`` transactions, under the namespace's writer lock.
    """

    @abstractmethod
    def lookup(self, key: bytes) -> Row | None: ...

    @abstractmethod
    def lookup_version(self, seq: int) -> Row | None: ...

    @abstractmethod
    def list_range(
        self, lower: bytes, upper: bytes | None, after: bytes | None, limit: int
    ) -> list[Row]: ...

    @abstractmethod
    def write(self) -> IndexWriter: ...

    @abstractmethod
    def close(self) -> None: ...


class IndexWriter:
    """One write transaction (a context manager); committed on a clean exit."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock, full_sync: bool) -> None:
        self.conn = conn
        self._lock = lock
        self._full_sync = full_sync

    def __enter__(self) -> IndexWriter:
        self._lock.acquire()
        try:
            if self._full_sync:
                self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.conn.execute("COMMIT")
            else:
                self.conn.execute("ROLLBACK")
        finally:
            try:
                if self._full_sync:
                    self.conn.execute("PRAGMA synchronous=NORMAL")
            finally:
                self._lock.release()

    # -- objects ------------------------------------------------------------------
    def upsert(self, rows: Sequence[tuple[Any, ...]]) -> None:
        upsert_rows(self.conn, rows)

    def add_bulk(
        self, per_volume: dict[int, tuple[int, int]], size: int, count: int, first_seq: int
    ) -> None:
        """Account for rows written with the BULK flag (the triggers skipped them)."""
        for vol, (nbytes, n) in per_volume.items():
            self.conn.execute(
                "UPDATE volumes SET live_bytes = live_bytes + ?, live_count = live_count + ?"
                " WHERE id = ?",
                (nbytes, n, vol),
            )
        self.conn.execute(
            "UPDATE state SET v = v + CASE k WHEN 'bytes' THEN ?1 ELSE ?2 END"
            " WHERE k IN ('bytes', 'count')",
            (size, count),
        )
        # keys put again after a delete are no longer deleted: walk the new rows (a rowid
        # range) and probe `deleted` by key, skipping it outright when it is empty
        if self.conn.execute("SELECT EXISTS (SELECT 1 FROM deleted)").fetchone()[0]:
            self.conn.execute(
                "DELETE FROM deleted WHERE key IN (SELECT key FROM objects WHERE seq >= ?)",
                (first_seq,),
            )

    def delete(self, key: bytes, seq: int) -> None:
        self.conn.execute("DELETE FROM objects WHERE key = ?", (key,))
        self.conn.execute("INSERT OR REPLACE INTO deleted(key, seq) VALUES (?, ?)", (key, seq))

    def current(self, key: bytes) -> Row | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM objects WHERE key = ?", (key,)).fetchone()
        return Row(*row) if row else None

    # -- state ----------------------------------------------------------------------
    def get_state(self, name: str, default: int = 0) -> int:
        row = self.conn.execute("SELECT v FROM state WHERE k = ?", (name,)).fetchone()
        return int(row[0]) if row else default

    def set_state(self, **values: int) -> None:
        self.conn.executemany(
            "INSERT INTO state(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
            list(values.items()),
        )

    def totals(self) -> tuple[int, int]:
        got = dict(self.conn.execute("SELECT k, v FROM state WHERE k IN ('bytes', 'count')"))
        return int(got.get("bytes", 0)), int(got.get("count", 0))

    # -- volumes --------------------------------------------------------------------
    def add_volume(
        self, vol: int, state: str, created_ns: int, size: int, min_seq: int | None = None
    ) -> None:
        # min_seq of a new volume is the first sequence number it can hold: a lower bound
        # of what it will hold, which is all compaction's tombstone rule needs.
        self.conn.execute(
            "INSERT INTO volumes(id, state, size, created_ns, min_seq) VALUES (?, ?, ?, ?, ?)",
            (vol, state, size, created_ns, min_seq),
        )

    def update_volume(self, vol: int, **fields: Any) -> None:
        sets = ", ".join(f"{name} = ?" for name in fields)
        self.conn.execute(f"UPDATE volumes SET {sets} WHERE id = ?", (*fields.values(), vol))

    def advance(self, next_seq: int, hwm: int) -> None:
        """After appending to the active volume: one statement (a trigger sizes the volume)."""
        self.conn.execute(
            "UPDATE state SET v = CASE k WHEN 'next_seq' THEN ?1 ELSE ?2 END"
            " WHERE k IN ('next_seq', 'hwm')",
            (next_seq, hwm),
        )

    def grow_volume(self, vol: int, size: int, min_seq: int, max_seq: int) -> None:
        self.conn.execute(
            "UPDATE volumes SET size = ?, min_seq = coalesce(min(min_seq, ?), ?),"
            " max_seq = coalesce(max(max_seq, ?), ?) WHERE id = ?",
            (size, min_seq, min_seq, max_seq, max_seq, vol),
        )

    def remove_volume(self, vol: int) -> None:
        self.conn.execute("DELETE FROM volumes WHERE id = ?", (vol,))

    # -- pins -----------------------------------------------------------------------
    def pin(self, holder: str, seqs: Iterable[int]) -> None:
        self.conn.executemany(
            "INSERT OR IGNORE INTO pins(holder, seq) VALUES (?, ?)", ((holder, s) for s in seqs)
        )

    def unpin(self, holder: str) -> int:
        n = self.conn.execute("DELETE FROM pins WHERE holder = ?", (holder,)).rowcount
        self.conn.execute(
            "DELETE FROM versions"
            " WHERE NOT EXISTS (SELECT 1 FROM pins WHERE pins.seq = versions.seq)"
        )
        return int(n)

    def take_dead_blobs(self) -> list[str]:
        names = [r[0] for r in self.conn.execute("SELECT name FROM dead_blobs")]
        self.conn.execute("DELETE FROM dead_blobs")
        return names


class SQLiteIndex(Index):
    """The default index: one SQLite file per namespace, WAL mode."""

    def __init__(self, path: str, *, create: bool = True) -> None:
        self.path = path
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._closed = False
        conn = self._connect()
        if create:
            # journal_mode=WAL is persistent; set it before anything else.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        else:
            conn.execute("SELECT count(*) FROM objects").fetchone()
        self._writer = conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=60.0
        )
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute("PRAGMA cache_size=-8192")
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    @property
    def reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def write(self, *, full_sync: bool = False) -> IndexWriter:
        return IndexWriter(self._writer, self._write_lock, full_sync)

    def upsert_autocommit(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """The group-commit fast path: one statement, its own transaction (triggers do
        the accounting and advance next_seq/hwm)."""
        if len(rows) > _MULTI_MAX:
            with self.write() as w:
                w.upsert(rows)
            return
        with self._write_lock:
            flat = [v for row in rows for v in row]
            self._writer.execute(_multi_upsert_sql(len(rows)), flat)

    def lookup(self, key: bytes) -> Row | None:
        row = self.reader.execute(
            f"SELECT {_COLUMNS} FROM objects WHERE key = ?", (key,)
        ).fetchone()
        return Row(*row) if row else None

    def locate(self, key: bytes) -> tuple[int, int, int, int, int, int, str | None] | None:
        """The fast path of ``get``: (seq, vol, off, len, flags, size, blob)."""
        row = self.reader.execute(
            "SELECT seq, vol, off, len, flags, size, blob FROM objects WHERE key = ?", (key,)
        ).fetchone()
        return row

    def lookup_version(self, seq: int) -> Row | None:
        conn = self.reader
        row = conn.execute(f"SELECT {_COLUMNS} FROM objects WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM versions WHERE seq = ?", (seq,)).fetchone()
        return Row(*row) if row else None

    def where_versions(self, seqs: Sequence[int]) -> dict[int, tuple[int, int, int]]:
        """seq -> (vol, off, len) for the versions of *seqs* that exist (current or kept)."""
        conn = self.reader
        out: dict[int, tuple[int, int, int]] = {}
        conn.execute("BEGIN")  # one snapshot for every chunk and both tables
        try:
            for i in range(0, len(seqs), 500):
                chunk = list(seqs[i : i + 500])
                marks = ",".join("?" * len(chunk))
                for table in ("objects", "versions"):
                    for seq, vol, off, length in conn.execute(
                        f"SELECT seq, vol, off, len FROM {table} WHERE seq IN ({marks})", chunk
                    ):
                        out.setdefault(seq, (vol, off, length))
        finally:
            conn.execute("COMMIT")
        return out

    def list_range(
        self, lower: bytes, upper: bytes | None, after: bytes | None, limit: int
    ) -> list[Row]:
        # one lower bound, the tighter: given both, SQLite may start the range at the
        # first and filter up to the second row by row (a page deep in a prefix, or after
        # a skipped folder, then costs its position in the prefix)
        if after is not None and after >= lower:
            sql = f"SELECT {_COLUMNS} FROM objects WHERE key > ?"
            args: list[Any] = [after]
        else:
            sql = f"SELECT {_COLUMNS} FROM objects WHERE key >= ?"
            args = [lower]
        if upper is not None:
            sql += " AND key < ?"
            args.append(upper)
        sql += " ORDER BY key LIMIT ?"
        args.append(limit)
        return [Row(*r) for r in self.reader.execute(sql, args)]

    def rows_in_volume(self, vol: int, after_off: int, limit: int) -> list[Row]:
        """Current objects stored in *vol*, in physical order."""
        return [
            Row(*r)
            for r in self.reader.execute(
                f"SELECT {_COLUMNS} FROM objects WHERE vol = ? AND off > ? ORDER BY off LIMIT ?",
                (vol, after_off, limit),
            )
        ]

    def volumes(self) -> list[dict[str, Any]]:
        conn = self.reader
        conn.execute("BEGIN")  # one snapshot for both reads
        try:
            cur = conn.execute("SELECT * FROM volumes ORDER BY id")
            names = [d[0] for d in cur.description]
            vols = [dict(zip(names, r, strict=True)) for r in cur]
            state = dict(conn.execute("SELECT k, v FROM state WHERE k IN ('hwm', 'next_seq')"))
        finally:
            conn.execute("COMMIT")
        for v in vols:
            if v["state"] == "active":
                # the active volume grows with every commit; its size lives in `state`
                v["size"] = state.get("hwm", v["size"])
                v["max_seq"] = state.get("next_seq", 1) - 1
        return vols

    def state(self, name: str, default: int = 0) -> int:
        row = self.reader.execute("SELECT v FROM state WHERE k = ?", (name,)).fetchone()
        return int(row[0]) if row else default

    def totals(self) -> tuple[int, int]:
        got = dict(self.reader.execute("SELECT k, v FROM state WHERE k IN ('bytes', 'count')"))
        return int(got.get("bytes", 0)), int(got.get("count", 0))

    def changes(
        self, since: int, limit: int
    ) -> list[tuple[int, bytes, str, int, bytes | None, int, str | None]]:
        return list(
            self.reader.execute(
                "SELECT seq, key, 'put', size, md5, mtime, meta FROM objects WHERE seq > ?1 "
                "UNION ALL SELECT seq, key, 'delete', 0, NULL, 0, NULL FROM deleted "
                "WHERE seq > ?1 "
                "ORDER BY seq LIMIT ?2",
                (since, limit),
            )
        )

    def pins(self) -> list[tuple[str, int]]:
        return list(self.reader.execute("SELECT holder, count(*) FROM pins GROUP BY holder"))

    def pinned(self, seq: int) -> bool:
        row = self.reader.execute("SELECT 1 FROM pins WHERE seq = ? LIMIT 1", (seq,)).fetchone()
        return row is not None

    def referenced_blobs(self) -> set[str]:
        conn = self.reader
        names = {r[0] for r in conn.execute("SELECT blob FROM objects WHERE blob IS NOT NULL")}
        names |= {r[0] for r in conn.execute("SELECT blob FROM versions WHERE blob IS NOT NULL")}
        return names

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
