"""The paired statistics behind a decision: exact McNemar and the paired bootstrap.

Both return :class:`Evidence` on the difference ``delta`` oriented so that positive
means the candidate is better: one-sided bounds at the chosen confidence, the one-sided
p-value of "the candidate is worse by more than ``tolerance``", and a standard error
used for the power check and the required evaluation size.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lakeloop.gate.metrics import PairedEvaluation

__all__ = [
    "Evidence",
    "bootstrap_values",
    "exact_mcnemar",
    "paired_bootstrap",
    "poisson_weights",
]


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
    rng: np.random.Generator,
    rows: int,
    units: int,
    dtype: type = np.float64,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """A (rows, units) matrix of Poisson(1) bootstrap weights (whole numbers).

    The 16-bit draws are the generator's raw 64-bit outputs cut in four: uniform, and
    about twice as fast as asking for bounded integers."""
    size = rows * units
    raw = rng.bit_generator.random_raw(-(-size // 4))
    draws = raw.view(np.uint16)[:size].reshape(rows, units)
    if out is not None and dtype == np.uint8 and out.shape == (rows, units):
        return np.take(_poisson_table(), draws, out=out)
    weights = np.take(_poisson_table(), draws)
    return weights if dtype == np.uint8 else weights.astype(dtype)


# Below this many weights (resamples x units) a bootstrap runs in the calling thread;
# above it, chunks of resamples run on threads (NumPy releases the GIL in the sums,
# prefix sums and gathers that do the work).
PARALLEL_MIN_WEIGHTS = 1 << 24
MAX_THREADS = 4


def bootstrap_values(
    evaluation: PairedEvaluation, *, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Both models' metric values under ``resamples`` Poisson resamples of the units.

    Resamples are drawn in chunks; chunk *i* draws from its own generator seeded with
    ``(seed, i)``, so the values are the same whether the chunks run one after another
    or on threads, in any order. Both models read the same weights: the pairing."""
    from concurrent.futures import ThreadPoolExecutor

    units = evaluation.units
    chunk = max(1, min(resamples, (1 << 18) // max(units, 1)))
    starts = range(0, resamples, chunk)
    out_a, out_b = np.empty(resamples), np.empty(resamples)
    local = threading.local()  # each thread's weight buffer, reused across its chunks

    def run(i: int) -> None:
        start = starts[i]
        rows = min(chunk, resamples - start)
        rng = np.random.default_rng([seed, i])
        buffer = getattr(local, "weights", None)
        if buffer is None or buffer.shape != (rows, units):
            buffer = local.weights = np.empty((rows, units), dtype=np.uint8)
        weights = poisson_weights(rng, rows, units, evaluation.weight_dtype, out=buffer)
        a, b = evaluation.values(weights)
        out_a[start : start + rows], out_b[start : start + rows] = a, b

    threads = min(MAX_THREADS, os.cpu_count() or 1, len(starts))
    if threads > 1 and resamples * units >= PARALLEL_MIN_WEIGHTS:
        with ThreadPoolExecutor(threads, thread_name_prefix="lakeloop-bootstrap") as pool:
            for _ in pool.map(run, range(len(starts))):
                pass
    else:
        each: Callable[[int], None] = run
        for i in range(len(starts)):
            each(i)
    return out_a, out_b


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
    a, b = bootstrap_values(evaluation, resamples=resamples, seed=seed)
    deltas = sign * (b - a)
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
    if evaluation.note:
        test = f"{test[:-1]}; {evaluation.note})"
    return (
        Evidence(delta, lower, upper, p_value, float(deltas.std(ddof=1)), test),
        a_obs,
        b_obs,
    )
