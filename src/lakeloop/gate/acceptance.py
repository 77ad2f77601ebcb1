"""Acceptance: is the model's metric above an absolute threshold, with confidence?

Accuracy gets an exact (Clopper-Pearson) or Wilson one-sided bound. Every other metric
(AUC, NDCG@k with groups, RMSE ...) gets a one-sided percentile bound from a seeded
Poisson bootstrap of the model's own value: the same resampling as the paired
comparison, applied to one model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lakeloop.errors import InvalidEvaluation, InvalidPolicy

__all__ = ["Acceptance", "acceptance", "lower_bound"]

METHODS = ("clopper-pearson", "wilson", "bootstrap")


@dataclass(frozen=True)
class Acceptance:
    """The answer to "does this model really have at least ``threshold``?".

    ``lower_bound`` is a one-sided lower confidence bound on the true accuracy at
    ``confidence``; ``passed`` when it reaches ``threshold``. ``n_required``: the
    evaluation size at which the bound would reach the threshold if the observed
    accuracy held (None when the estimate is not above the threshold: no size would do).
    For a metric where lower is better (RMSE, MAE, log loss) the claim is "at most
    ``threshold``" and ``lower_bound`` holds the one-sided *upper* bound. ``successes``
    is None for bootstrap claims; ``n`` counts groups when the claim had groups.
    """

    passed: bool
    estimate: float
    lower_bound: float
    n_required: int | None
    n: int
    successes: int | None
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
    method: str | None = None,
    *,
    k: int | None = None,
    groups: Any = None,
    resamples: int = 1000,
    seed: int = 0,
) -> Acceptance:
    """Check an absolute claim such as "accuracy at least 0.9" with a one-sided bound.

    Accuracy (without ``groups``) uses ``method`` "clopper-pearson" (exact, the default)
    or "wilson". Any other metric -- and accuracy with ``groups`` -- uses "bootstrap": a
    one-sided percentile bound from ``resamples`` seeded Poisson resamples (of groups,
    when ``groups`` is given; ranking metrics need them and ``k``, or ``"ndcg@10"``).

    >>> a = acceptance([1] * 950 + [0] * 50, [1] * 1000, threshold=0.9)
    >>> a.passed, round(a.lower_bound, 3)
    (True, 0.937)
    """
    import numpy as np

    from lakeloop.gate.metrics import _array
    from lakeloop.gate.policy import Policy

    try:
        claim = Policy(metric=metric, k=k, confidence=confidence, resamples=resamples, seed=seed)
    except InvalidPolicy as exc:
        raise InvalidPolicy(
            exc.message, op="acceptance", target=exc.target, hint=exc.hint
        ) from None
    metric = claim.metric
    exact = metric == "accuracy" and groups is None
    if method is None:
        method = "clopper-pearson" if exact else "bootstrap"
    if method not in METHODS:
        raise InvalidPolicy(
            f"unknown method {method!r}",
            op="acceptance",
            target=method,
            hint="use 'clopper-pearson' or 'wilson' (accuracy), or 'bootstrap'",
        )
    if method != "bootstrap" and not exact:
        raise InvalidPolicy(
            f"{method} bounds a proportion: accuracy without groups only, not {claim.label}",
            op="acceptance",
            target=method,
            hint="use method='bootstrap' (the default for other metrics)",
        )
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise InvalidPolicy(
            f"threshold must be a number, not {threshold!r}", op="acceptance", target="threshold"
        )
    if exact and not 0 < threshold < 1:
        raise InvalidPolicy(
            f"threshold must lie in (0, 1), not {threshold!r}", op="acceptance", target="threshold"
        )
    if not np.isfinite(threshold):
        raise InvalidPolicy("threshold must be finite", op="acceptance", target="threshold")
    if method == "bootstrap":
        return _bootstrap_acceptance(y_true, pred, claim, float(threshold), groups)
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
    reasons.append(_verdict(passed, n_required, "accuracy", threshold, confidence, "examples"))
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


def _verdict(
    passed: bool, n_required: int | None, label: str, threshold: float, confidence: float, unit: str
) -> str:
    if passed:
        return f"passed: the {label} is at least {threshold} with {confidence:.0%} confidence"
    if n_required is None:
        return f"failed: the observed {label} is not beyond the threshold"
    return f"failed: not shown yet; about {n_required} {unit} would show it if the {label} held"


def _bootstrap_acceptance(
    y_true: Any, pred: Any, claim: Any, threshold: float, groups: Any
) -> Acceptance:
    """One model's metric bounded by a one-sided percentile bootstrap (see :func:`acceptance`)."""
    import numpy as np

    from lakeloop.gate.metrics import prepare
    from lakeloop.gate.stats import bootstrap_values

    evaluation = prepare(claim.metric, y_true, pred, pred, k=claim.k, groups=groups)
    estimate, _ = evaluation.observed()
    units = evaluation.units
    draws, _ = bootstrap_values(evaluation, resamples=claim.resamples, seed=claim.seed)
    draws = draws[np.isfinite(draws)]
    higher = claim.higher_is_better
    alpha = 1 - claim.confidence
    if len(draws) < claim.resamples // 2:
        bound = -np.inf if higher else np.inf
        se = np.inf
    elif higher:  # a one-sided bound never excludes the observed value itself
        bound = min(float(np.quantile(draws, alpha, method="lower")), estimate)
        se = float(draws.std(ddof=1))
    else:
        bound = max(float(np.quantile(draws, 1 - alpha, method="higher")), estimate)
        se = float(draws.std(ddof=1))
    passed = bool(bound >= threshold) if higher else bool(bound <= threshold)
    margin = (estimate - threshold) if higher else (threshold - estimate)
    n_required = None
    if margin > 0 and np.isfinite(se):
        from scipy.stats import norm

        z = float(norm.ppf(claim.confidence))
        n_required = max(1, int(np.ceil(units * (z * se / margin) ** 2)))
    unit = "groups" if groups is not None else "examples"
    side, op = ("lower", ">=" if passed else "<") if higher else ("upper", "<=" if passed else ">")
    claim_word = "at least" if higher else "at most"
    reasons = [
        f"{claim.label} {estimate:.4f} on n={units} {unit}; one-sided {claim.confidence:.0%} "
        f"bootstrap {side} bound {bound:.4f} {op} threshold {threshold} "
        f"({claim.resamples} Poisson resamples, seed {claim.seed})"
    ]
    if passed:
        reasons.append(
            f"passed: the {claim.label} is {claim_word} {threshold} with "
            f"{claim.confidence:.0%} confidence"
        )
    else:
        reasons.append(_verdict(False, n_required, claim.label, threshold, claim.confidence, unit))
    return Acceptance(
        passed,
        float(estimate),
        float(bound),
        n_required,
        units,
        None,
        threshold,
        claim.confidence,
        "bootstrap",
        claim.label,
        reasons,
    )
