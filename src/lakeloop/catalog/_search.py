"""The search index of one namespace: a SQLite file beside the lake's namespaces.

``<lake>/catalog/<namespace>.sqlite`` holds one row per live object (key, size, mtime,
content type, etag, version, user metadata) with B-tree indexes for prefix, content type,
size and time, a metadata table for exact ``name = value`` matches, and an FTS5 table
with the trigram tokenizer over keys and text metadata for substring, LIKE/GLOB and
full-text queries.

The index is derived data. It follows the namespace's change feed (``ns.changes``): a
search first applies whatever was put or deleted since the last one, so it is current
without adding any work to the store's put path. Delete the file and it is rebuilt.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeloop.errors import InvalidInput

if TYPE_CHECKING:
    from lakeloop.store import Namespace

_SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects(
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    ctype TEXT NOT NULL,
    etag TEXT,
    version INTEGER NOT NULL,
    meta TEXT NOT NULL,
    text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS objects_ctype ON objects(ctype, key);
CREATE INDEX IF NOT EXISTS objects_size ON objects(size);
CREATE INDEX IF NOT EXISTS objects_mtime ON objects(mtime);
CREATE TABLE IF NOT EXISTS meta(
    name TEXT NOT NULL, value TEXT NOT NULL, id INTEGER NOT NULL,
    PRIMARY KEY(name, value, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS meta_id ON meta(id);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    key, text, content='objects', content_rowid='id', tokenize='trigram');
CREATE TABLE IF NOT EXISTS state(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS table_stats(
    etag TEXT PRIMARY KEY, stats TEXT NOT NULL) WITHOUT ROWID;
"""

_SORTS = {
    "key": "key",
    "size": "size",
    "mtime": "mtime",
}

# metadata whose values are full-text searchable: everything but long opaque values
_MAX_TEXT_VALUE = 512
# a filter matching fewer than 2 % of the objects (but at least the first and at most the
# second number) is answered from its index; more, and rows are checked in sort order
_SELECTIVE = (2000, 50_000)
# tags share the metadata table under a name no user metadata can have
_TAG = "\x00tag"


@dataclass
class Query:
    """What to search for; every field is optional and they combine with AND.

    ``text``: full text over keys and text metadata (every word must occur, substring
    match, case-insensitive). ``key``: substring of the key (case-insensitive).
    ``glob``: shell pattern over the whole key (``*``, ``?``, ``[...]``; case-sensitive).
    ``prefix``: key prefix. ``content_type``: exact, or ``image/*``. ``min_size`` /
    ``max_size`` (bytes, inclusive), ``after`` / ``before`` (mtime, seconds since the
    epoch, inclusive / exclusive). ``metadata``: user metadata that must be equal
    (a value of ``"*"`` only asks that the name exists). ``tags``: tags every result
    carries (the comma-separated ``tags`` metadata value).
    """

    text: str | None = None
    key: str | None = None
    glob: str | None = None
    prefix: str | None = None
    content_type: str | None = None
    min_size: int | None = None
    max_size: int | None = None
    after: float | None = None
    before: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)

    def check(self) -> None:
        for name in ("text", "key", "glob", "prefix", "content_type"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"{name} must be a string", op="search", target=name)
        for name in ("min_size", "max_size"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise InvalidInput(
                    f"{name} must be a non-negative integer", op="search", target=name
                )
        for name in ("after", "before"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise InvalidInput(f"{name} must be a number (epoch seconds)", op="search")
        if not isinstance(self.metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()
        ):
            raise InvalidInput("metadata must map names to string values", op="search")
        if not isinstance(self.tags, list | tuple) or not all(
            isinstance(t, str) for t in self.tags
        ):
            raise InvalidInput("tags must be a list of strings", op="search")
        texts = [getattr(self, n) for n in ("text", "key", "glob", "prefix", "content_type")]
        texts += [*self.metadata, *self.metadata.values(), *self.tags]
        if any("\x00" in t for t in texts if t):  # SQLite's FTS cannot take it
            raise InvalidInput("search terms cannot contain a NUL character", op="search")


def tags_of(metadata: dict[str, str]) -> list[str]:
    return [t.strip() for t in metadata.get("tags", "").split(",") if t.strip()]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _glob_literals(pattern: str) -> list[str]:
    """Literal runs of a glob pattern (outside ``*``, ``?`` and ``[...]``)."""
    runs: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in "*?":
            runs.append("".join(cur))
            cur = []
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                cur.append(c)
            else:
                runs.append("".join(cur))
                cur = []
                i = end
        else:
            cur.append(c)
        i += 1
    runs.append("".join(cur))
    return [r for r in runs if r]


def _glob_prefix(pattern: str) -> str:
    m = re.match(r"[^*?\[]*", pattern)
    return m.group(0) if m else ""


def _fts_phrase(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def prefix_upper(prefix: str) -> str | None:
    """The smallest string above every string that starts with *prefix* (None: no bound).

    UTF-8 byte order (the store's key order, and SQLite's BINARY collation) is code point
    order, so the bound steps the last character up by one code point, over the
    surrogates, which UTF-8 cannot encode.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            nxt = last + 1 if last + 1 != 0xD800 else 0xE000
            return "".join(chars) + chr(nxt)
    return None


@dataclass
class Row:
    namespace: str
    key: str
    size: int
    mtime: float
    content_type: str
    etag: str | None
    version: int
    metadata: dict[str, str]


class NamespaceIndex:
    """The search index of one namespace (see the module docstring)."""

    def __init__(self, path: Path, namespace: str) -> None:
        self.path = path
        self.namespace = namespace
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: four B-trees take inserts
        if self.conn.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
            # derived data in an older layout: start it over (it is rebuilt from the store)
            tables = [r[0] for r in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'fts_%'"
            )]  # fmt: skip
            for t in tables:
                self.conn.execute(f'DROP TABLE IF EXISTS "{t}"')
            self.conn.executescript(_SCHEMA)
            self.conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    # ------------------------------------------------------------------ sync
    def _state(self, k: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT v FROM state WHERE k = ?", (k,)).fetchone()
        return default if row is None else row[0]

    @property
    def reader(self) -> sqlite3.Connection:
        """This thread's connection for queries (WAL: readers never wait for the writer)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA cache_size=-16384")
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

    def _ids(self, sql: str, args: list[Any], limit: int) -> list[int]:
        """The first *limit* ids *sql* yields, remembered by this thread until the next
        ``new_query`` (a search asks twice: for its page and for its count)."""
        memo_key = (sql, tuple(args), limit, self.synced_seq)
        memo: dict[Any, list[int]] = getattr(self._local, "memo", {})
        if memo_key not in memo:
            memo[memo_key] = [r[0] for r in self.reader.execute(f"{sql} LIMIT {limit}", args)]
            self._local.memo = memo
        return memo[memo_key]

    def new_query(self) -> None:
        self._local.memo = {}

    def _threshold(self) -> int:
        low, high = _SELECTIVE
        row = self.reader.execute("SELECT v FROM state WHERE k = 'count'").fetchone()
        if row is None:  # an index from before the count was kept: count once
            with self._lock:
                n = self.conn.execute("SELECT count(*) FROM objects").fetchone()[0]
                self.conn.execute("INSERT OR REPLACE INTO state VALUES ('count', ?)", (n,))
            row = (n,)
        return max(low, min(high, int(row[0]) // 50))

    @property
    def synced_seq(self) -> int:
        row = self.reader.execute("SELECT v FROM state WHERE k = 'seq'").fetchone()
        return 0 if row is None else int(row[0])

    def refresh(self, ns: Namespace, identity: str, max_changes: int | None = None) -> int:
        """Apply the namespace's changes since the last refresh; -> how many were applied.

        *identity* names this incarnation of the namespace (its creation stamp): if it
        differs from the one indexed, or the feed went backwards, the index starts over.
        """
        with self._lock:
            seq = int(self._state("seq", 0))
            if self._state("identity") != identity or seq > ns.last_seq:
                self._reset(identity)
                seq = 0
            if seq >= ns.last_seq:
                return 0
            applied = 0
            batch: list[Any] = []
            for change in ns.changes(since=seq, limit=max_changes):
                batch.append(change)
                if len(batch) >= 20000:
                    applied += self._apply(batch)
                    batch = []
            if batch:
                applied += self._apply(batch)
            return applied

    def _reset(self, identity: str) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute("DELETE FROM objects")
            self.conn.execute("DELETE FROM meta")
            self.conn.execute("INSERT INTO fts(fts) VALUES ('delete-all')")
            self.conn.execute("DELETE FROM state")
            self.conn.execute("INSERT INTO state VALUES ('identity', ?)", (identity,))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _apply(self, changes: Sequence[Any]) -> int:
        # A row's id is the store's sequence number of that version: unique in the
        # namespace, so rows and their metadata go in with executemany, no lastrowid.
        conn = self.conn
        rows = []
        meta_rows = []
        for c in changes:
            if c.op != "put":
                continue
            meta = c.metadata or {}
            text = " ".join(
                v for v in meta.values() if isinstance(v, str) and len(v) <= _MAX_TEXT_VALUE
            )
            rows.append(
                (
                    c.seq,
                    c.key,
                    c.size,
                    c.mtime,
                    c.content_type or "application/octet-stream",
                    c.etag,
                    c.seq,
                    json.dumps(meta, ensure_ascii=False, sort_keys=True) if meta else "{}",
                    text,
                )
            )
            meta_rows += [(name, value, c.seq) for name, value in meta.items()]
            meta_rows += [(_TAG, t, c.seq) for t in tags_of(meta)]
        conn.execute("BEGIN IMMEDIATE")
        try:
            # no triggers: executemany into the FTS table is several times faster than a
            # trigger firing per row; removing a row needs its old values for FTS5
            old = []
            keys = [(c.key,) for c in changes]
            for i in range(0, len(keys), 500):
                chunk = [k for (k,) in keys[i : i + 500]]
                old += conn.execute(
                    "SELECT id, key, text FROM objects WHERE key IN "
                    f"({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
            if old:
                conn.executemany(
                    "INSERT INTO fts(fts, rowid, key, text) VALUES ('delete', ?, ?, ?)", old
                )
                conn.executemany("DELETE FROM objects WHERE id = ?", [(r[0],) for r in old])
                conn.executemany("DELETE FROM meta WHERE id = ?", [(r[0],) for r in old])
            conn.executemany(
                "INSERT INTO objects(id, key, size, mtime, ctype, etag, version, meta, text) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO fts(rowid, key, text) VALUES (?, ?, ?)",
                [(r[0], r[1], r[8]) for r in rows],
            )
            if meta_rows:
                conn.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?, ?)", meta_rows)
            conn.execute(
                "INSERT OR REPLACE INTO state VALUES ('seq', ?)", (max(c.seq for c in changes),)
            )
            conn.execute(
                "INSERT OR REPLACE INTO state VALUES ('count', ?)",
                (int(self._state("count", 0)) + len(rows) - len(old),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(changes)

    # ------------------------------------------------------------------ query
    def _where(self, q: Query, *, counting: bool = False) -> tuple[list[str], list[Any]]:
        """SQL conditions on ``objects o`` for *q*, planned for the data at hand.

        Column filters (prefix, content type, size, time, glob) are plain predicates that
        SQLite answers from its B-trees. Set filters (trigram matches, metadata, tags) can
        run two ways: as an id set (``o.id IN (...)``, good when few objects match) or as a
        check on each row while SQLite walks the sort order (good when many match: a page
        fills after a few rows). Each set filter's match count is estimated, up to
        a threshold (2 % of the objects, within ``_SELECTIVE`` bounds); the most selective
        one under it drives, the rest are row checks. Counting uses the same plan: every
        plan streams rows without materializing a large set first, so a count can stop
        when its time is up.
        """
        limit = self._threshold()
        where: list[str] = []
        args: list[Any] = []
        if q.prefix:
            where.append("o.key >= ?")
            args.append(q.prefix)
            upper = prefix_upper(q.prefix)
            if upper is not None:
                where.append("o.key < ?")
                args.append(upper)
        # (estimate sql, estimate args, id-set sql, row-check sql, row-check args)
        sets: list[tuple[str, list[Any], str, str | None, list[Any]]] = []

        def fts(match: str, check: str | None, check_args: list[Any]) -> None:
            sets.append(
                (
                    "SELECT rowid FROM fts WHERE fts MATCH ?",
                    [match],
                    "o.id IN (SELECT rowid FROM fts WHERE fts MATCH ?)",
                    check,
                    check_args,
                )
            )

        if q.glob:
            gp = _glob_prefix(q.glob)
            if gp:
                where.append("o.key >= ?")
                args.append(gp)
                upper = prefix_upper(gp)
                if upper is not None:
                    where.append("o.key < ?")
                    args.append(upper)
            where.append("o.key GLOB ?")
            args.append(q.glob)
            literals = [lit for lit in _glob_literals(q.glob) if len(lit) >= 3]
            if literals and not gp:
                # the trigram index may narrow the candidates; GLOB above decides exactly
                fts(" AND ".join("key:" + _fts_phrase(lit) for lit in literals), "1", [])
        if q.key:
            pat = "%" + _like_escape(q.key) + "%"
            if len(q.key) >= 3:
                fts(
                    "key:" + _fts_phrase(q.key),
                    "o.key LIKE ? ESCAPE '\\'" if q.key.isascii() else None,
                    [pat],
                )
            else:
                where.append("o.key LIKE ? ESCAPE '\\'")
                args.append(pat)
        if q.text:
            words = q.text.split()
            long_words = [w for w in words if len(w) >= 3]
            like = "(o.key LIKE ? ESCAPE '\\' OR o.text LIKE ? ESCAPE '\\')"
            for w in long_words:  # one filter a word: the rarest drives, the rest check
                pat = "%" + _like_escape(w) + "%"
                fts(_fts_phrase(w), like if w.isascii() else None, [pat, pat])
            for w in words:
                if len(w) < 3:  # shorter than a trigram: no index can help
                    where.append(like)
                    pat = "%" + _like_escape(w) + "%"
                    args += [pat, pat]
        # range filters: an index helps only when few objects fall in the range; otherwise
        # walking the sort order and checking each row fills a page sooner, so the column
        # is written as +o.col, which keeps SQLite off its index
        ranges: list[tuple[str, list[Any]]] = []
        if q.content_type:
            if q.content_type.endswith("/*"):
                major = q.content_type[:-1]
                ranges.append(("{c}ctype >= ? AND {c}ctype < ?", [major, major[:-1] + "0"]))
            else:
                where.append("o.ctype = ?")  # (ctype, key): already in key order
                args.append(q.content_type)
        if q.min_size is not None or q.max_size is not None:
            lo = 0 if q.min_size is None else q.min_size
            hi = 2**63 - 1 if q.max_size is None else q.max_size
            ranges.append(("{c}size >= ? AND {c}size <= ?", [lo, hi]))
        if q.after is not None or q.before is not None:
            after = -1e300 if q.after is None else float(q.after)
            before = 1e300 if q.before is None else float(q.before)
            ranges.append(("{c}mtime >= ? AND {c}mtime < ?", [after, before]))
        for cond, cond_args in ranges:
            n = self.reader.execute(
                "SELECT count(*) FROM (SELECT 1 FROM objects o WHERE "
                + cond.format(c="o.")
                + f" LIMIT {limit})",
                cond_args,
            ).fetchone()[0]
            # a count walks an index range without sorting: the index always helps it
            where.append(cond.format(c="o." if counting or n < limit else "+o."))
            args += cond_args
        pairs = list(q.metadata.items()) + [(_TAG, t) for t in q.tags]
        for name, value in pairs:
            if value == "*" and name != _TAG:
                sets.append(
                    (
                        "SELECT id FROM meta WHERE name = ?",
                        [name],
                        "o.id IN (SELECT id FROM meta WHERE name = ?)",
                        "EXISTS (SELECT 1 FROM meta m WHERE m.name = ? AND m.id = o.id)",
                        [name],
                    )
                )
            else:
                sets.append(
                    (
                        "SELECT id FROM meta WHERE name = ? AND value = ?",
                        [name, value],
                        "o.id IN (SELECT id FROM meta WHERE name = ? AND value = ?)",
                        "EXISTS (SELECT 1 FROM meta m WHERE m.name = ? AND m.value = ? "
                        "AND m.id = o.id)",
                        [name, value],
                    )
                )
        if not sets:
            return where, args
        # each set filter's first `limit` ids: how selective it is, and, when it drives,
        # the id set itself (so a page and its count do not run the same match again)
        found = [self._ids(est, est_args, limit) for est, est_args, *_ in sets]
        estimates = [len(ids) for ids in found]
        driver = min(range(len(sets)), key=lambda i: estimates[i])
        for i, (_est, est_args, id_set, check, check_args) in enumerate(sets):
            drives = i == driver and estimates[i] < limit
            if drives and estimates[i] < limit:
                where.append("o.id IN (SELECT value FROM json_each(?))")
                args.append(json.dumps(found[i]))
            elif check is None or drives:
                where.append(id_set)
                args += est_args
            elif check != "1":
                where.append(check)
                args += check_args
        return where, args

    def search(
        self,
        q: Query,
        *,
        sort: str,
        descending: bool,
        limit: int,
        cursor: tuple[Any, str, str] | None,
    ) -> list[tuple[Any, Row]]:
        """Up to *limit* rows after *cursor* = (sort value, namespace, key), in order."""
        col = _SORTS[sort]
        where, args = self._where(q)
        if cursor is not None:
            cval, cns, ckey = cursor
            cmp = "<" if descending else ">"
            if self.namespace == cns:
                where.append(f"(o.{col} {cmp} ? OR (o.{col} = ? AND o.key {cmp} ?))")
                args += [cval, cval, ckey]
            elif (self.namespace > cns) != descending:
                where.append(f"o.{col} {cmp}= ?")
                args.append(cval)
            else:
                where.append(f"o.{col} {cmp} ?")
                args.append(cval)
        direction = "DESC" if descending else "ASC"
        order = f"o.{col} {direction}" + ("" if col == "key" else f", o.key {direction}")
        sql = (
            "SELECT o.key, o.size, o.mtime, o.ctype, o.etag, o.version, o.meta, "
            f"o.{col} FROM objects o"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY {order} LIMIT ?"
        )
        out = []
        for key, size, mtime, ctype, etag, version, meta, sortval in self.reader.execute(
            sql, [*args, limit]
        ):
            row = Row(self.namespace, key, size, mtime, ctype, etag, version, json.loads(meta))
            out.append((sortval, row))
        return out

    def count(self, q: Query, cap: int, budget: float) -> tuple[int, bool]:
        """How many objects match, up to ``cap + 1``, counting for at most *budget*
        seconds; -> (count, complete). An incomplete count is a lower bound."""
        where, args = self._where(q, counting=True)
        sql = "SELECT 1 FROM objects o" + (" WHERE " + " AND ".join(where) if where else "")
        deadline = time.monotonic() + budget
        n = 0
        cur = self.reader.execute(sql + " LIMIT ?", [*args, cap + 1])
        while True:
            got = len(cur.fetchmany(256))  # small steps: the time budget is checked often
            n += got
            if got < 256:
                return n, True
            if time.monotonic() > deadline:
                cur.close()
                return n, False

    def rows(self, prefix: str = "") -> Iterator[Row]:
        """Every indexed object under *prefix*, in key order."""
        q = Query(prefix=prefix or None)
        where, args = self._where(q)
        sql = "SELECT key, size, mtime, ctype, etag, version, meta FROM objects o" + (
            " WHERE " + " AND ".join(where) if where else ""
        )
        for key, size, mtime, ctype, etag, version, meta in self.reader.execute(
            sql + " ORDER BY key", args
        ):
            yield Row(self.namespace, key, size, mtime, ctype, etag, version, json.loads(meta))

    def aggregate(self, prefix: str) -> dict[str, Any]:
        """Count, bytes, a log2 size histogram and content types under *prefix*."""
        where, args = self._where(Query(prefix=prefix or None))
        cond = " WHERE " + " AND ".join(where) if where else ""
        count, total = self.reader.execute(
            f"SELECT count(*), coalesce(sum(size), 0) FROM objects o{cond}", args
        ).fetchone()
        types = dict(
            self.reader.execute(
                f"SELECT ctype, count(*) FROM objects o{cond} GROUP BY ctype ORDER BY 2 DESC",
                args,
            ).fetchall()
        )
        hist: dict[int, int] = {}
        for size, n in self.reader.execute(
            f"SELECT size, count(*) FROM objects o{cond} GROUP BY size", args
        ):
            bucket = max(int(size), 1).bit_length() - 1  # [2**b, 2**(b+1))
            hist[bucket] = hist.get(bucket, 0) + n
        if prefix:
            label_sql = (
                "SELECT m.value, count(*) FROM meta m JOIN objects o ON o.id = m.id "
                f"WHERE m.name = 'label' AND {' AND '.join(where)} GROUP BY m.value"
            )
        else:
            label_sql = "SELECT value, count(*) FROM meta WHERE name = 'label' GROUP BY value"
        labels = dict(self.reader.execute(label_sql, args if prefix else []).fetchall())
        return {
            "count": count,
            "bytes": total,
            "size_log2": hist,
            "content_types": types,
            "labels": dict(sorted(labels.items())),
        }

    def tables(self, prefix: str, content_types: list[str]) -> Iterator[Row]:
        """Objects under *prefix* whose content type is one of *content_types*, or whose
        key ends like a table file (.csv, .tsv, .jsonl, .parquet)."""
        where, args = self._where(Query(prefix=prefix or None))
        marks = ",".join("?" * len(content_types))
        cond = (" AND ".join(where) + " AND ") if where else ""
        sql = (
            "SELECT key, size, mtime, ctype, etag, version, meta FROM objects o WHERE "
            f"{cond}(o.ctype IN ({marks}) OR o.key LIKE '%.csv' OR o.key LIKE '%.tsv' "
            "OR o.key LIKE '%.jsonl' OR o.key LIKE '%.parquet') ORDER BY o.key"
        )
        for key, size, mtime, ctype, etag, version, meta in self.reader.execute(
            sql, [*args, *content_types]
        ):
            yield Row(self.namespace, key, size, mtime, ctype, etag, version, json.loads(meta))

    def cached_table_stats(self, etag: str) -> dict[str, Any] | None:
        row = self.reader.execute(
            "SELECT stats FROM table_stats WHERE etag = ?", (etag,)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def cache_table_stats(self, etag: str, stats: dict[str, Any]) -> None:
        with self._lock:
            self.conn.execute(
                "INSERT OR REPLACE INTO table_stats VALUES (?, ?)", (etag, json.dumps(stats))
            )

    def close(self) -> None:
        with self._lock:
            conns, self._readers = [self.conn, *self._readers], []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
