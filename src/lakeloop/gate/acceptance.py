"""Acceptance: is the model's accuracy above an absolute threshold, with confidence?"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lakeloop.errors import InvalidEvaluation, InvalidPolicy

__all__ = ["Acceptance", "acceptance", "lower_bound"]

METHODS = ("clopper-pearson", "wilson")


@dataclass(frozen=True)
class Acceptance:
    """The answer to "does this model really have at least ``threshold``?".

    ``lower_bound`` is a one-sided lower confidence bound on the true accuracy at
    ``confidence``; ``passed`` when it reaches ``threshold``. ``n_required``: the
    evaluation size at which the bound would reach the threshold if the observed
    accuracy held (None when the estimate is not above the threshold: no size would do).
    """

    passed: bool
    estimate: float
    lower_bound: float
    n_required: int | None
    n: int
    successes: int
    threshold: float
    confidence: float
    method: str
    metric: str = "accuracy"
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "acceptance",
            "passed": self.passed,
            "metric": self.metric,
            "estimate": self.estimate,
            "lower_bound": self.lower_bound,
            "threshold": self.threshold,
            "confidence": self.confidence,
            "method": self.method,
            "n": self.n,
            "successes": self.successes,
            "n_required": self.n_required,
            "reasons": list(self.reasons),
        }


def lower_bound(successes: float, n: float, confidence: float, method: str) -> float:
    """One-sided lower bound on a proportion (``successes`` may be fractional)."""
    from scipy.stats import beta, norm

    if method == "clopper-pearson":
        return (
            0.0 if successes <= 0 else float(beta.ppf(1 - confidence, successes, n - successes + 1))
        )
    z = float(norm.ppf(confidence))
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def _n_required(estimate: float, threshold: float, confidence: float, method: str) -> int | None:
    if estimate <= threshold:
        return None

    def reaches(n: int) -> bool:
        return lower_bound(estimate * n, n, confidence, method) >= threshold

    high = 1
    while not reaches(high):
        high *= 2
        if high > 1 << 40:
            return None
    low = high // 2  # reaches(low) is false (or low is 0)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high


def acceptance(
    y_true: Any,
    pred: Any,
    metric: str = "accuracy",
    threshold: float = 0.90,
    confidence: float = 0.95,
    method: str = "clopper-pearson",
) -> Acceptance:
    """Check an accuracy claim with a one-sided exact (or Wilson) lower bound.

    >>> a = acceptance([1] * 950 + [0] * 50, [1] * 1000, threshold=0.9)
    >>> a.passed, round(a.lower_bound, 3)
    (True, 0.937)
    """
    import numpy as np

    from lakeloop.gate.metrics import _array

    if metric != "accuracy":
        raise InvalidPolicy(
            f"acceptance is defined for accuracy, not {metric!r}",
            op="acceptance",
            target=metric,
            hint="an absolute claim on another metric needs its own interval; use accuracy",
        )
    if method not in METHODS:
        raise InvalidPolicy(
            f"unknown method {method!r}",
            op="acceptance",
            target=method,
            hint="use 'clopper-pearson' or 'wilson'",
        )
    for name, value in (("threshold", threshold), ("confidence", confidence)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise InvalidPolicy(
                f"{name} must lie in (0, 1), not {value!r}", op="acceptance", target=name
            )
    if confidence <= 0.5:
        raise InvalidPolicy("confidence must be above 0.5", op="acceptance", target="confidence")
    y = _array(y_true, "y_true", metric)
    p = _array(pred, "predictions", metric)
    if p.shape[0] != y.shape[0]:
        raise InvalidEvaluation(
            f"predictions have {p.shape[0]} rows but y_true has {y.shape[0]}",
            op="acceptance",
            target=metric,
        )
    if y.ndim != 1:
        raise InvalidEvaluation(
            f"y_true has shape {y.shape}; expected (n,)", op="acceptance", target=metric
        )
    labels = p.argmax(axis=1) if p.ndim == 2 else p
    n = len(y)
    successes = int(np.sum(labels == y))
    estimate = successes / n
    bound = lower_bound(successes, n, confidence, method)
    passed = bound >= threshold
    n_required = _n_required(estimate, threshold, confidence, method)
    reasons = [
        f"accuracy {estimate:.4f} ({successes}/{n}); one-sided {confidence:.0%} {method} lower "
        f"bound {bound:.4f} {'>=' if passed else '<'} threshold {threshold}"
    ]
    if passed:
        reasons.append(
            f"passed: the accuracy is at least {threshold} with {confidence:.0%} confidence"
        )
    elif n_required is None:
        reasons.append("failed: the observed accuracy is not above the threshold")
    else:
        reasons.append(
            f"failed: not shown yet; about {n_required} examples would show it if the accuracy held"
        )
    return Acceptance(
        passed,
        estimate,
        bound,
        n_required,
        n,
        successes,
        threshold,
        confidence,
        method,
        metric,
        reasons,
    )
