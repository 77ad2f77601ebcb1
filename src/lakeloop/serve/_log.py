"""The inference log and the feedback desk: what the server writes to its two streams.

- :class:`InferenceLog` writes one event per predicted instance to stream
  ``predictions`` from its own thread, in batches (one ``publish_many`` for everything
  that queued while the previous one ran), so the model never waits for the disk. The
  event id is the prediction id (a shadow score's: ``<id>-shadow``). Inputs of more
  than ``serve_log_inline_max`` numbers are stored in the lake (namespace
  ``_inference``, one JSON object per instance, one durable ``put_many`` per batch,
  before the events) and logged as ``{"ref": "_inference/<key>"}``.
- :class:`FeedbackDesk` writes feedback to stream ``feedback`` (one durable
  ``publish_many`` per group of concurrent requests) and then remembers the prediction
  ids in a small SQLite table, so that a repeated label can be answered as a
  replacement. The stream is the truth; the table only says "seen before".
"""

from __future__ import annotations

import concurrent.futures
import logging
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lakeloop.serve._background import Consumer
from lakeloop.serve._metrics import Metrics
from lakeloop.serve._payload import dumps

__all__ = ["INPUTS_NS", "FeedbackDesk", "InferenceLog", "LogUnavailable", "Scored"]

INPUTS_NS = "_inference"  # the lake's namespace for inputs too big to log inline


class LogUnavailable(Exception):
    """The inference log could not be written (the stream's error is the cause)."""


@dataclass
class Scored:
    """One batch of scored instances for the log: ``batch`` is the checked array,
    ``instances`` the request's JSON instances when the body had them (else None)."""

    model: str
    version: int
    ids: Sequence[str]
    batch: np.ndarray
    instances: list[Any] | None
    outputs: np.ndarray
    time: float
    shadow: bool = False

    def events(
        self, inline_max: int, stored: list[tuple[str, bytes]]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """The events, and (appended to *stored*) the inputs to store in the lake first.

        An instance of more than *inline_max* numbers is logged as ``{"ref":
        "_inference/<model>/<day>/<prediction id>.json"}``: its JSON is one object in the
        lake, written once (by the serving model's event; a shadow event points at the
        same object). Inline, a 28x28 image costs about a millisecond of the interpreter
        to turn into lists and JSON text; as one object in a batch, a tenth of that."""
        outputs = self.outputs.tolist()
        batch = self.batch
        instances = self.instances
        big = batch[0].size > inline_max if len(batch) else False
        day = time.strftime("%Y-%m-%d", time.gmtime(self.time))
        events = []
        for i, pid in enumerate(self.ids):
            if big:
                key = f"{self.model}/{day}/{pid}.json"
                if not self.shadow:
                    stored.append((key, dumps(batch[i])))
                value: Any = {"ref": f"{INPUTS_NS}/{key}"}
            elif instances is not None:
                value = instances[i]
            else:
                value = batch[i].tolist()
            events.append(
                {
                    "prediction_id": pid,
                    "time": self.time,
                    "model": self.model,
                    "version": self.version,
                    "input": value,
                    "output": outputs[i],
                    "shadow": self.shadow,
                }
            )
        suffix = "-shadow" if self.shadow else ""
        return events, [pid + suffix for pid in self.ids]


class InferenceLog:
    """``submit(scored) -> Future`` done once those events are durably on the stream.

    At most ``queue_limit`` events wait; ``submit`` blocks beyond that (back pressure on
    the model's thread rather than unbounded memory).
    """

    def __init__(
        self,
        stream: Any,
        metrics: Metrics,
        *,
        inputs: Any = None,
        inline_max: int = 256,
        queue_limit: int = 10000,
    ) -> None:
        self.stream = stream
        self.metrics = metrics
        self.inputs = inputs  # the lake's _inference namespace (big inputs), or None
        self.inline_max = inline_max if inputs is not None else 1 << 62
        self._consumer: Consumer[tuple[Scored, concurrent.futures.Future[None]]] = Consumer(
            "inference-log", self._write, limit=queue_limit
        )

    @property
    def queued(self) -> int:
        """Events waiting for (or being written to) the log."""
        return self._consumer.queued

    def submit(self, scored: Scored) -> concurrent.futures.Future[None]:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._consumer.put((scored, future), len(scored.ids), wait=True)
        return future

    def _write(self, taken: list[tuple[Scored, concurrent.futures.Future[None]]]) -> None:
        """One durable write for everything that queued while the previous one ran."""
        events: list[dict[str, Any]] = []
        ids: list[str] = []
        stored: list[tuple[str, bytes]] = []
        error: Exception | None = None
        try:
            for scored, _ in taken:
                e, i = scored.events(self.inline_max, stored)
                events.extend(e)
                ids.extend(i)
            if stored:  # first, so that no event ever points at a missing input
                self.inputs.put_many(stored, content_type="application/json")
            self.stream.publish_many(events, ids=ids)
            self.metrics.inc("lakeloop_serve_log_events_total", by=len(events))
        except Exception as exc:  # counted, and handed to whoever waits for it
            error = LogUnavailable(f"the inference log is not writable: {exc}")
            error.__cause__ = exc
            logging.getLogger("lakeloop.serve").error(
                "serve: %d events not written to the inference log: %s", len(events), exc
            )
            self.metrics.inc(
                "lakeloop_serve_log_errors_total", by=sum(len(sc.ids) for sc, _ in taken)
            )
        for _, future in taken:
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        self._consumer.close()


class FeedbackDesk:
    """Durable feedback: ``accept(groups)`` publishes every item, then records the ids.

    *groups* is one list of items per request (the batcher hands several at once);
    the answer per request is a list of ``{"prediction_id", "replaced"}``. An item
    replaces an earlier label when its prediction id had feedback before (in any earlier
    request, by any server process on this lake, or earlier in the same group).
    """

    def __init__(self, stream: Any, path: Path, metrics: Metrics) -> None:
        self.stream = stream
        self.metrics = metrics
        path.parent.mkdir(parents=True, exist_ok=True)
        # one connection, used only by the feedback batcher's single worker thread
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen (prediction_id TEXT PRIMARY KEY, n INTEGER, last REAL)"
        )
        self._db.commit()

    def accept(self, groups: list[list[dict[str, Any]]]) -> tuple[list[list[dict[str, Any]]], None]:
        items = [item for group in groups for item in group]
        pids = sorted({item["prediction_id"] for item in items})
        seen: set[str] = set()
        for start in range(0, len(pids), 500):
            chunk = pids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT prediction_id FROM seen WHERE prediction_id IN ({marks})", chunk
            )
            seen.update(r[0] for r in rows)
        now = time.time()
        events = [
            {"prediction_id": i["prediction_id"], "label": i["label"], "time": now} for i in items
        ]
        self.stream.publish_many(events, ids=[uuid.uuid4().hex for _ in events])  # durable
        answers: list[list[dict[str, Any]]] = []
        replaced = 0
        for group in groups:
            answer = []
            for item in group:
                pid = item["prediction_id"]
                was = pid in seen
                seen.add(pid)
                replaced += was
                answer.append({"prediction_id": pid, "replaced": was})
            answers.append(answer)
        self._db.executemany(
            "INSERT INTO seen VALUES (?, 1, ?) ON CONFLICT(prediction_id)"
            " DO UPDATE SET n = n + 1, last = excluded.last",
            [(pid, now) for pid in pids],
        )
        self._db.commit()
        self.metrics.inc("lakeloop_serve_feedback_total", by=len(items))
        if replaced:
            self.metrics.inc("lakeloop_serve_feedback_replaced_total", by=replaced)
        return answers, None

    def close(self) -> None:
        self._db.close()
