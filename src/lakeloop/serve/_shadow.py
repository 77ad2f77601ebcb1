"""Shadow mode: a second model scores the live traffic, logged, never answered."""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

import numpy as np

from lakeloop.serve._log import InferenceLog, Scored
from lakeloop.serve._metrics import Metrics
from lakeloop.serve._swap import ModelSlot

__all__ = ["ShadowScorer"]

log = logging.getLogger("lakeloop.serve")


class ShadowScorer:
    """Scores live batches with the shadow model in its own thread, logged as shadow,
    never answered. A bounded queue: when the shadow falls behind, batches are skipped
    (and counted), so the shadow can never slow the serving model down."""

    def __init__(self, slot: ModelSlot, log_: InferenceLog, metrics: Metrics, limit: int) -> None:
        self.slot = slot
        self.log = log_
        self.metrics = metrics
        self.limit = max(1, limit)
        self._queue: deque[tuple[np.ndarray, list[Any] | None, list[str], float]] = deque()
        self.queued = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    def offer(
        self, batch: np.ndarray, inputs: list[Any] | None, ids: list[str], when: float
    ) -> None:
        with self._cond:
            if self.queued + len(ids) > self.limit:
                self.metrics.inc("lakeloop_serve_shadow_skipped_total", by=len(ids))
                return
            self._queue.append((batch, inputs, ids, when))
            self.queued += len(ids)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, inputs, ids, when = self._queue.popleft()
                self.queued -= len(ids)
            model = self.slot.current
            if model is None:
                continue
            try:
                out = model.predict(batch)
            except Exception:
                log.exception("serve: the shadow model %s@%s failed", model.name, model.version)
                continue
            self.log.submit(
                Scored(model.name, model.version, ids, batch, inputs, out, when, shadow=True)
            )

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
