"""The joiner's durable state: predictions waiting for their label, labels joined, counters.

One SQLite file per model in the lake folder (``<lake>/loop/<model>/joiner.sqlite``), in
WAL mode with ``synchronous=FULL``, so a committed transaction survives ``kill -9`` and
power loss. The joiner acknowledges stream messages only after the transaction that
records them has committed (and, for feedback, after the example is durable in the lake),
so a crash at any point makes the stream deliver the same messages again, and applying
them again gives the same rows: every write here is an upsert keyed by the prediction id
or the event id.

Tables:

- ``predictions`` — one row per (prediction id, shadow): time, model version, the input
  (or a reference to it), the output. Kept for ``loop_join_window`` seconds, then
  expired (their ids stay in ``expired`` so late feedback can say why it did not join).
- ``labels`` — one row per joined prediction: the label, the feedback time that set it
  (the latest wins), the lake key it was landed under, when it was joined.
- ``scores`` — one row per (prediction id, shadow): which version predicted it and
  whether it was right; live accuracy is an aggregate over it.
- ``seen`` — feedback event ids already applied (redeliveries are skipped cheaply).
- ``unmatched`` — feedback that joined nothing, with the reason (it is also landed in
  the lake, so nothing is dropped silently).
- ``counters`` — running totals for ``lakeloop loop status``.
- ``clock`` — how far the feedback stream has been read, in event time (the newest
  feedback event's time; the wall clock only after a joiner has read no feedback for
  longer than the window plus ``stream_ack_timeout``). Predictions
  expire against it, not against the wall clock, so a joiner that restarts after a
  backlog joins the labels waiting in the stream instead of expiring everything.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["COUNTERS", "JoinState", "LiveAccuracy", "state_path"]

COUNTERS = (
    "predictions",  # prediction events recorded (shadow ones included)
    "joined",  # distinct predictions that got a label
    "relabelled",  # later feedback that changed a joined label
    "stale",  # feedback older than the label already joined (an earlier label lost)
    "unmatched",  # feedback that joined nothing (unknown id, expired, bad label)
    "expired",  # predictions that waited past the join window without a label
    "other_model",  # prediction events of another model (not this project's)
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    pid TEXT NOT NULL, shadow INTEGER NOT NULL, time REAL NOT NULL, version INTEGER,
    input TEXT, output TEXT, PRIMARY KEY (pid, shadow));
CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time);
CREATE TABLE IF NOT EXISTS labels (
    pid TEXT PRIMARY KEY, label TEXT NOT NULL, feedback_time REAL NOT NULL,
    key TEXT NOT NULL, joined_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS scores (
    pid TEXT NOT NULL, shadow INTEGER NOT NULL, version INTEGER, correct INTEGER,
    joined_at REAL NOT NULL, PRIMARY KEY (pid, shadow));
CREATE INDEX IF NOT EXISTS scores_version ON scores (version, shadow, joined_at);
CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS expired (pid TEXT PRIMARY KEY, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS unmatched (
    event_id TEXT PRIMARY KEY, pid TEXT, reason TEXT NOT NULL, key TEXT NOT NULL,
    time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS clock (name TEXT PRIMARY KEY, value REAL NOT NULL);
"""


def state_path(lake_root: str | Path, model: str) -> Path:
    return Path(lake_root) / "loop" / model / "joiner.sqlite"


@dataclass(frozen=True)
class LiveAccuracy:
    """A model version's accuracy on the live traffic whose labels came back.

    ``lower``/``upper``: the two-sided 95 % Clopper-Pearson interval (None with n = 0).
    ``shadow``: scored in shadow mode (the challenger's answers were logged, not returned).
    """

    version: int | None
    n: int
    correct: int
    shadow: bool = False
    lower: float | None = None
    upper: float | None = None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "shadow": self.shadow,
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "lower": self.lower,
            "upper": self.upper,
        }


def _interval(correct: int, n: int) -> tuple[float | None, float | None]:
    if n == 0:
        return None, None
    from lakeloop.gate.acceptance import lower_bound

    lower = lower_bound(float(correct), n, 0.975, "clopper-pearson")
    upper = 1 - lower_bound(float(n - correct), n, 0.975, "clopper-pearson")
    return lower, upper


class JoinState:
    """The SQLite file behind one model's joiner (see the module docstring)."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)

    @classmethod
    def open_existing(cls, path: Path) -> JoinState | None:
        """The state for reading, or None when no joiner ever ran for the model."""
        return cls(path, readonly=True) if path.is_file() else None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> JoinState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- transactions
    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def bump(self, name: str, by: int = 1) -> None:
        if by:
            self.db.execute(
                "INSERT INTO counters VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, by),
            )

    # ---------------------------------------------------------------- predictions
    def add_predictions(self, rows: Iterable[tuple[str, bool, float, int | None, Any, Any]]) -> int:
        """Record (pid, shadow, time, version, input, output) rows; -> how many were new."""
        new = 0
        for pid, shadow, when, version, given, output in rows:
            cur = self.db.execute(
                "INSERT OR IGNORE INTO predictions VALUES (?, ?, ?, ?, ?, ?)",
                (pid, int(shadow), when, version, json.dumps(given), json.dumps(output)),
            )
            new += cur.rowcount
        self.bump("predictions", new)
        return new

    def prediction(self, pid: str, shadow: bool = False) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT time, version, input, output FROM predictions WHERE pid = ? AND shadow = ?",
            (pid, int(shadow)),
        ).fetchone()
        if row is None:
            return None
        return {
            "time": row[0],
            "version": row[1],
            "input": None if row[2] is None else json.loads(row[2]),
            "output": json.loads(row[3]),
        }

    def was_expired(self, pid: str) -> bool:
        return self.db.execute("SELECT 1 FROM expired WHERE pid = ?", (pid,)).fetchone() is not None

    def clock(self) -> float | None:
        """How far the feedback stream has been read (event time), None before any round."""
        row = self.db.execute("SELECT value FROM clock WHERE name = 'feedback'").fetchone()
        return None if row is None else float(row[0])

    def advance_clock(self, seen: float) -> float:
        """Move the clock forward to *seen* (never back); -> the clock."""
        self.db.execute(
            "INSERT INTO clock VALUES ('feedback', ?) "
            "ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)",
            (seen,),
        )
        clock = self.clock()
        assert clock is not None  # just written
        return clock

    def expire(self, before: float) -> int:
        """Forget predictions older than *before*: unlabelled ones count as expired."""
        rows = self.db.execute(
            "SELECT DISTINCT p.pid, l.pid IS NOT NULL FROM predictions p "
            "LEFT JOIN labels l ON l.pid = p.pid WHERE p.time < ?",
            (before,),
        ).fetchall()
        if not rows:
            return 0
        self.db.executemany(
            "INSERT OR REPLACE INTO expired VALUES (?, ?)", [(pid, before) for pid, _ in rows]
        )
        self.db.execute("DELETE FROM predictions WHERE time < ?", (before,))
        unlabelled = sum(1 for _, labelled in rows if not labelled)
        self.bump("expired", unlabelled)
        return unlabelled

    # ---------------------------------------------------------------- feedback
    def seen(self, event_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(event_ids), 500):
            chunk = event_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0]
                for r in self.db.execute(
                    f"SELECT event_id FROM seen WHERE event_id IN ({marks})", chunk
                )
            )
        return found

    def mark_seen(self, event_ids: Iterable[str]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", [(e,) for e in event_ids])

    def label(self, pid: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT label, feedback_time, key FROM labels WHERE pid = ?", (pid,)
        ).fetchone()
        if row is None:
            return None
        return {"label": json.loads(row[0]), "feedback_time": row[1], "key": row[2]}

    def set_label(self, pid: str, label: Any, feedback_time: float, key: str) -> None:
        old = self.label(pid)
        now = time.time()
        self.db.execute(
            "INSERT INTO labels VALUES (?, ?, ?, ?, ?) ON CONFLICT(pid) DO UPDATE SET "
            "label = excluded.label, feedback_time = excluded.feedback_time, key = excluded.key",
            (pid, json.dumps(label), feedback_time, key, now),
        )
        if old is None:
            self.bump("joined")
        elif old["label"] != label:
            self.bump("relabelled")

    def set_score(self, pid: str, shadow: bool, version: int | None, correct: bool | None) -> None:
        self.db.execute(
            "INSERT INTO scores VALUES (?, ?, ?, ?, ?) ON CONFLICT(pid, shadow) DO UPDATE SET "
            "version = excluded.version, correct = excluded.correct",
            (pid, int(shadow), version, None if correct is None else int(correct), time.time()),
        )

    def add_unmatched(self, event_id: str, pid: str | None, reason: str, key: str) -> None:
        cur = self.db.execute(
            "INSERT OR IGNORE INTO unmatched VALUES (?, ?, ?, ?, ?)",
            (event_id, pid, reason, key, time.time()),
        )
        self.bump("unmatched", cur.rowcount)

    # ---------------------------------------------------------------- reading
    def counters(self) -> dict[str, int]:
        out = dict.fromkeys(COUNTERS, 0)
        out.update({n: int(v) for n, v in self.db.execute("SELECT name, value FROM counters")})
        out["pending"] = int(
            self.db.execute(
                "SELECT COUNT(*) FROM predictions p WHERE p.shadow = 0 AND NOT EXISTS "
                "(SELECT 1 FROM labels l WHERE l.pid = p.pid)"
            ).fetchone()[0]
        )
        return out

    def joined_since(self, since: float) -> int:
        """Labels joined (first time) after *since* (epoch seconds)."""
        row = self.db.execute("SELECT COUNT(*) FROM labels WHERE joined_at > ?", (since,))
        return int(row.fetchone()[0])

    def live_accuracy(self, *, since: float | None = None) -> list[LiveAccuracy]:
        """Accuracy per (version, shadow) over the scored predictions joined after *since*."""
        rows = self.db.execute(
            "SELECT version, shadow, COUNT(*), SUM(correct) FROM scores "
            "WHERE correct IS NOT NULL AND joined_at > ? GROUP BY version, shadow "
            "ORDER BY version, shadow",
            (since if since is not None else -1.0,),
        ).fetchall()
        out = []
        for version, shadow, n, correct in rows:
            lower, upper = _interval(int(correct or 0), int(n))
            out.append(LiveAccuracy(version, int(n), int(correct or 0), bool(shadow), lower, upper))
        return out

    def unmatched(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT event_id, pid, reason, key, time FROM unmatched ORDER BY time DESC LIMIT ?",
            (limit,),
        ).fetchall()
        names = ("event_id", "pid", "reason", "key", "time")
        return [dict(zip(names, r, strict=True)) for r in rows]
