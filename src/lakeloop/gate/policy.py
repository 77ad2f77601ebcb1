"""What the gate asks of a candidate: one metric, a margin, a confidence."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from lakeloop.errors import InvalidPolicy

__all__ = ["MIN_RESAMPLES", "Policy"]

MIN_RESAMPLES = 1000
_AT_K = re.compile(r"^(precision|recall|ndcg)@(\d+)$")


@dataclass(frozen=True)
class Policy:
    """How a candidate is judged against the champion on one metric.

    ``margin``: how much worse (in the metric's units) the candidate may be and still be
    promoted under ``promote="non-inferior"``; the lower bound of the difference must lie
    above ``-margin``. ``promote="superior"`` asks the lower bound to lie above 0.
    ``tolerance``: how much worse it may be before the gate blocks; the upper bound must
    lie below ``-tolerance`` to block. ``confidence``: the level of each one-sided bound.
    ``k``: the cut-off of ranking metrics (``metric="ndcg@10"`` sets it too).
    ``resamples`` and ``seed``: the paired bootstrap (at least 1,000 resamples; the seed
    makes decisions repeatable). ``power``: the power the evaluation set should have to
    detect a difference of ``margin``; below it the decision carries a warning, or is a
    block when ``require_power``. ``name``: a label for reports (default: the metric).

    >>> Policy(metric="accuracy", margin=0.01).promote
    'non-inferior'
    """

    metric: str = "accuracy"
    margin: float = 0.0
    confidence: float = 0.95
    promote: str = "non-inferior"
    tolerance: float = 0.0
    k: int | None = None
    resamples: int = MIN_RESAMPLES
    seed: int = 0
    power: float = 0.8
    require_power: bool = False
    name: str | None = field(default=None)

    def __post_init__(self) -> None:
        from lakeloop.gate.metrics import metric_spec

        if not isinstance(self.metric, str):
            raise InvalidPolicy("metric must be a string", op="policy", target=repr(self.metric))
        at_k = _AT_K.match(self.metric)
        if at_k:
            if self.k is not None and self.k != int(at_k.group(2)):
                raise InvalidPolicy(
                    f"k={self.k} contradicts metric {self.metric!r}",
                    op="policy",
                    target=self.metric,
                )
            object.__setattr__(self, "metric", f"{at_k.group(1)}_at_k")
            object.__setattr__(self, "k", int(at_k.group(2)))
        spec = metric_spec(self.metric)
        target = self.metric

        def bad(message: str) -> InvalidPolicy:
            return InvalidPolicy(message, op="policy", target=target)

        for name in ("margin", "confidence", "tolerance", "power"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(f"{name} must be a number, not {value!r}")
            if not math.isfinite(value):
                raise bad(f"{name} must be finite")
        if self.margin < 0 or self.tolerance < 0:
            raise bad("margin and tolerance are amounts of worsening and must be >= 0")
        if not 0.5 < self.confidence < 1:
            raise bad(f"confidence must lie in (0.5, 1), not {self.confidence}")
        if not 0 < self.power < 1:
            raise bad(f"power must lie in (0, 1), not {self.power}")
        if self.promote not in ("non-inferior", "superior"):
            raise bad(f"promote must be 'non-inferior' or 'superior', not {self.promote!r}")
        if spec.ranking:
            if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
                raise bad(f"{self.metric} needs an integer k >= 1 (e.g. metric='ndcg@10')")
        elif self.k is not None:
            raise bad(f"k applies to ranking metrics only, not {self.metric}")
        if isinstance(self.resamples, bool) or not isinstance(self.resamples, int):
            raise bad("resamples must be an integer")
        if self.resamples < MIN_RESAMPLES:
            raise bad(f"resamples must be at least {MIN_RESAMPLES}, not {self.resamples}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise bad("seed must be an integer >= 0")
        if not isinstance(self.require_power, bool):
            raise bad("require_power must be true or false")
        if self.name is not None and not isinstance(self.name, str):
            raise bad("name must be a string")

    @property
    def label(self) -> str:
        """The name reports use: ``name``, else the metric (with its k)."""
        if self.name:
            return self.name
        return self.metric.replace("_at_k", f"@{self.k}") if self.k else self.metric

    @property
    def higher_is_better(self) -> bool:
        from lakeloop.gate.metrics import metric_spec

        return metric_spec(self.metric).higher_is_better

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "policy") -> Policy:
        """Build a policy from a mapping (a ``[[gate.policy]]`` table), refusing unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidPolicy(
                f"unknown key {unknown[0]!r}",
                op="read policy",
                target=where,
                hint="known keys: " + ", ".join(sorted(known)),
            )
        return cls(**data)
