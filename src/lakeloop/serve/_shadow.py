"""Shadow mode: a second model scores the live traffic, logged, never answered."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from lakeloop.serve._background import Consumer
from lakeloop.serve._log import InferenceLog, Scored
from lakeloop.serve._metrics import Metrics
from lakeloop.serve._swap import ModelSlot

__all__ = ["ShadowScorer"]

log = logging.getLogger("lakeloop.serve")

_Batch = tuple[np.ndarray, list[Any] | None, list[str], float]


class ShadowScorer:
    """Scores live batches with the shadow model in its own thread, logged as shadow,
    never answered. A bounded queue: when the shadow falls behind, batches are skipped
    (and counted), so the shadow can never slow the serving model down."""

    def __init__(self, slot: ModelSlot, log_: InferenceLog, metrics: Metrics, limit: int) -> None:
        self.slot = slot
        self.log = log_
        self.metrics = metrics
        self._consumer: Consumer[_Batch] = Consumer(
            "shadow", self._score, limit=limit, one_at_a_time=True
        )

    @property
    def queued(self) -> int:
        return self._consumer.queued

    def offer(
        self, batch: np.ndarray, inputs: list[Any] | None, ids: list[str], when: float
    ) -> None:
        if not self._consumer.put((batch, inputs, ids, when), len(ids), wait=False):
            self.metrics.inc("lakeloop_serve_shadow_skipped_total", by=len(ids))

    def _score(self, batches: list[_Batch]) -> None:
        for batch, inputs, ids, when in batches:
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
        self._consumer.close()
