"""The paired statistics behind a decision: exact McNemar and the paired bootstrap.

Both return :class:`Evidence` on the difference ``delta`` oriented so that positive
means the candidate is better: one-sided bounds at the chosen confidence, the one-sided
p-value of "the candidate is worse by more than ``tolerance``", and a standard error
used for the power check and the required evaluation size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lakeloop.gate.metrics import PairedEvaluation

__all__ = ["Evidence", "exact_mcnemar", "paired_bootstrap", "poisson_weights"]


@dataclass(frozen=True)
class Evidence:
    delta: float
    lower: float
    upper: float
    p_value: float
    standard_error: float
    test: str


def exact_mcnemar(
    champion_only: int, candidate_only: int, n: int, *, confidence: float, tolerance: float
) -> Evidence:
    """Exact paired test and interval for a difference of accuracies.

    Only discordant examples carry information: ``champion_only`` (b) examples the
    champion gets right and the candidate wrong, ``candidate_only`` (c) the reverse.
    Given m = b + c, c is binomial(m, p) and delta = (2p - 1) m / n. One-sided
    Clopper-Pearson bounds on p map to bounds on delta; the p-value is the exact binomial
    tail at the p that puts delta at ``-tolerance`` (with tolerance 0 this is the exact
    McNemar test). The bounds condition on m, which is exact at delta = 0.
    """
    from scipy.stats import beta, binom

    b, c, m = champion_only, candidate_only, champion_only + candidate_only
    alpha = 1 - confidence
    delta = (c - b) / n
    if m == 0:
        return Evidence(0.0, 0.0, 0.0, 1.0, 0.0, "exact McNemar (no discordant examples)")
    p_low = 0.0 if c == 0 else float(beta.ppf(alpha, c, m - c + 1))
    p_high = 1.0 if c == m else float(beta.ppf(1 - alpha, c + 1, m - c))
    scale = m / n
    lower, upper = (2 * p_low - 1) * scale, (2 * p_high - 1) * scale
    p0 = 0.5 * (1 - tolerance * n / m)
    p_value = 1.0 if p0 <= 0 else float(binom.cdf(c, m, p0))
    se = math.sqrt(max(m / n - delta * delta, 0.0) / n)
    return Evidence(delta, lower, upper, p_value, se, "exact McNemar (paired, one-sided)")


# Poisson(1) weights from 16 random bits through a table: each example is drawn k times
# with probability P(Poisson(1) = k) to within 2^-16. Drawing weights this way costs a
# byte-sized lookup per example and needs no scatter, which keeps 1,000 resamples of a
# million rows within seconds.
_TABLE: np.ndarray | None = None


def _poisson_table() -> np.ndarray:
    global _TABLE
    if _TABLE is None:
        from scipy.stats import poisson

        edges = np.round(poisson.cdf(np.arange(32), 1.0) * 65536).astype(np.int64)
        _TABLE = np.searchsorted(edges, np.arange(65536), side="right").astype(np.uint8)
    return _TABLE


def poisson_weights(
    rng: np.random.Generator, rows: int, units: int, dtype: type = np.float64
) -> np.ndarray:
    """A (rows, units) matrix of Poisson(1) bootstrap weights (whole numbers)."""
    draws = rng.integers(0, 65536, size=(rows, units), dtype=np.uint16)
    weights = np.take(_poisson_table(), draws)
    return weights if dtype == np.uint8 else weights.astype(dtype)


def paired_bootstrap(
    evaluation: PairedEvaluation,
    *,
    higher_is_better: bool,
    confidence: float,
    tolerance: float,
    resamples: int,
    seed: int,
) -> tuple[Evidence, float, float]:
    """Paired Poisson bootstrap of the difference; returns evidence and both observed values.

    Every resample reweights the same units for both models, so the spread is that of the
    *difference*, which is far smaller than each model's own spread when their errors are
    correlated. Bounds are percentiles of the resampled differences; the p-value is the
    share of resamples in which the candidate is not worse by more than ``tolerance``.
    """
    a_obs, b_obs = evaluation.observed()
    sign = 1.0 if higher_is_better else -1.0
    delta = sign * (b_obs - a_obs)
    rng = np.random.default_rng(seed)
    units = evaluation.units
    chunk = max(1, min(resamples, (1 << 18) // max(units, 1)))
    deltas = np.empty(resamples)
    done = 0
    while done < resamples:
        rows = min(chunk, resamples - done)
        a, b = evaluation.values(poisson_weights(rng, rows, units, evaluation.weight_dtype))
        deltas[done : done + rows] = sign * (b - a)
        done += rows
    deltas = deltas[np.isfinite(deltas)]  # a resample that lost every positive, say
    alpha = 1 - confidence
    if len(deltas) < resamples // 2:
        return (
            Evidence(delta, -math.inf, math.inf, 1.0, math.inf, "paired bootstrap (failed)"),
            a_obs,
            b_obs,
        )
    lower = float(np.quantile(deltas, alpha, method="lower"))
    upper = float(np.quantile(deltas, 1 - alpha, method="higher"))
    # A one-sided bound never excludes the observed difference itself.
    lower, upper = min(lower, delta), max(upper, delta)
    p_value = (1 + int((deltas >= -tolerance).sum())) / (1 + len(deltas))
    test = f"paired bootstrap ({resamples} Poisson resamples, seed {seed}, percentile bounds)"
    return (
        Evidence(delta, lower, upper, p_value, float(deltas.std(ddof=1)), test),
        a_obs,
        b_obs,
    )
