"""The metrics the gate knows, each written so that a bootstrap can reweight it cheaply.

Every metric turns the two models' predictions into a :class:`PairedEvaluation`: an
object with ``units`` (examples, or groups when ``groups`` is given) and one method,
``values(weights)``, that returns both models' metric values under a matrix of weights
over the units (one row per resample). The observed values are ``values(ones)``. Most
metrics are ratios of sums of per-unit statistics (accuracy, F1, log loss, RMSE, MAE,
ranking metrics averaged over queries), so a resample costs one matrix product; AUC
sorts each model's scores once and reweights prefix sums.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lakeloop.errors import InvalidEvaluation, InvalidPolicy

__all__ = [
    "METRICS",
    "MetricSpec",
    "PairedEvaluation",
    "metric_spec",
    "metric_value",
    "prepare",
    "validate",
]

Array = np.ndarray


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool
    inputs: str  # what y_true and the predictions hold, for error messages and docs
    ranking: bool = False
    exact_test: bool = False  # a paired exact test exists (accuracy); else the bootstrap


METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("accuracy", True, "labels (or class scores, shape (n, classes))", False, True),
        MetricSpec("f1", True, "labels; binary when labels are 0/1, else macro-averaged"),
        MetricSpec("auc", True, "0/1 labels and scores, shape (n,) or (n, classes)"),
        MetricSpec("log_loss", False, "labels and probabilities, shape (n,) or (n, classes)"),
        MetricSpec("rmse", False, "true values and predicted values"),
        MetricSpec("mae", False, "true values and predicted values"),
        MetricSpec("precision_at_k", True, "relevance labels and scores, with groups", True),
        MetricSpec("recall_at_k", True, "relevance labels and scores, with groups", True),
        MetricSpec("ndcg_at_k", True, "graded relevance labels and scores, with groups", True),
    )
}


def metric_spec(name: str) -> MetricSpec:
    spec = METRICS.get(name)
    if spec is None:
        raise InvalidPolicy(
            f"unknown metric {name!r}",
            op="gate",
            target=name,
            hint="known metrics: " + ", ".join(METRICS) + " (ranking ones also as 'ndcg@10')",
        )
    return spec


class PairedEvaluation:
    """Both models' metric values under weights over ``units`` (see the module docstring)."""

    units: int
    weight_dtype: type = np.float64  # the dtype ``values`` wants its weights in
    note = ""  # how the metric is resampled, when reports should say it

    def values(self, weights: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    def observed(self) -> tuple[float, float]:
        a, b = self.values(np.ones((1, self.units), dtype=self.weight_dtype))
        return float(a[0]), float(b[0])


class _RatioOfSums(PairedEvaluation):
    """Metrics computed from column sums of per-unit statistics (column 0 counts rows)."""

    def __init__(self, stats_a: Array, stats_b: Array, finish: Callable[[Array], Array]) -> None:
        # one contiguous row per statistic: the weighted sums walk memory in order
        self.columns = np.ascontiguousarray(np.hstack([stats_a, stats_b]).T, dtype=np.float64)
        self.width = stats_a.shape[1]
        self.units = self.columns.shape[1]
        self.finish = finish

    def values(self, weights: Array) -> tuple[Array, Array]:
        # einsum rather than a matrix product: no BLAS threads to start for each resample
        sums = np.einsum("ij,kj->ik", weights, self.columns)
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.finish(sums[:, : self.width]), self.finish(sums[:, self.width :])


class _Auc(PairedEvaluation):
    """Area under the ROC curve (one-vs-rest macro average for several classes).

    Each model's scores are sorted once; under weights, the AUC is the weighted share of
    (positive, negative) pairs ordered correctly, ties counting one half, computed from a
    prefix sum of the negatives' weights.

    For one binary AUC over rows, ``values`` reads its weights in the champion's sorted
    order (its negatives, then its positives) rather than in row order: the weights are
    independent and identically distributed, so any fixed order gives the same bootstrap,
    and the champion then reads its weights as two contiguous slices without gathering.
    """

    weight_dtype = np.uint8  # whole-number weights

    def __init__(
        self,
        positives: list[Array],
        scores_a: list[Array],
        scores_b: list[Array],
        rows_of_unit: Array | None,
        units: int,
    ) -> None:
        self.units = units
        self.rows_of_unit = rows_of_unit  # None: units are rows
        self.parts_a = [_AucPart(s, p) for s, p in zip(scores_a, positives, strict=True)]
        self.parts_b = [_AucPart(s, p) for s, p in zip(scores_b, positives, strict=True)]
        if rows_of_unit is None and len(positives) == 1:
            a, b = self.parts_a[0], self.parts_b[0]
            position = np.empty(units, dtype=np.int64)
            position[np.concatenate([a.neg_rows, a.pos_rows])] = np.arange(units)
            b.neg_sel, b.pos_sel = position[b.neg_rows], position[b.pos_rows]
            a.neg_sel, a.pos_sel = slice(0, len(a.neg_rows)), slice(len(a.neg_rows), units)

    def values(self, weights: Array) -> tuple[Array, Array]:
        rows = weights if self.rows_of_unit is None else weights[:, self.rows_of_unit]
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.mean([p.auc(rows) for p in self.parts_a], axis=0)
            b = np.mean([p.auc(rows) for p in self.parts_b], axis=0)
        return a, b


class _AucPart:
    """One model's AUC for one positive class, under integer weights per row.

    Set up once: negatives sorted by score, and for each positive the number of
    negatives scored strictly below it (``lo``) and at most equal to it (``hi``). Under
    weights, the credit of a positive is the weight of negatives below it plus half the
    weight of those tied with it: two lookups in a prefix sum of the negatives' weights.
    Positives are ordered by ``lo`` so those lookups walk memory in order.
    """

    def __init__(self, scores: Array, positive: Array) -> None:
        pos_rows, neg_rows = np.flatnonzero(positive), np.flatnonzero(~positive)
        self.neg_rows = neg_rows[np.argsort(scores[neg_rows], kind="stable")]
        ranked_neg = scores[self.neg_rows]
        lo = np.searchsorted(ranked_neg, scores[pos_rows], side="left")
        hi = np.searchsorted(ranked_neg, scores[pos_rows], side="right")
        order = np.argsort(lo, kind="stable")
        self.pos_rows, self.lo, self.hi = pos_rows[order], lo[order], hi[order]
        self.ties = bool((self.lo != self.hi).any())
        # where this part reads its negatives' and positives' weights (see _Auc)
        self.neg_sel: Array | slice = self.neg_rows
        self.pos_sel: Array | slice = self.pos_rows
        self._buffers = threading.local()  # per thread: resamples may run on threads

    def auc(self, weights: Array) -> Array:
        if weights.shape[1] >= 4096:  # long rows: 1-D operations, one resample at a time
            return np.array([self._one(row) for row in weights])
        below = np.zeros((weights.shape[0], len(self.neg_rows) + 1), dtype=np.int64)
        np.cumsum(weights[:, self.neg_sel], axis=1, out=below[:, 1:])
        w_pos = weights[:, self.pos_sel].astype(np.int64)
        twice = below[:, self.lo] + below[:, self.hi] if self.ties else 2 * below[:, self.lo]
        result: Array = np.einsum("ij,ij->i", w_pos, twice) / (
            2.0 * w_pos.sum(axis=1) * below[:, -1]
        )
        return result

    def _one(self, weights: Array) -> float:
        # Integer buffers, one set per thread and reused across resamples: integer prefix
        # sums are exact and several times faster than float ones, int32 halves their
        # memory traffic (exact while the weights' total stays below 2**31: weights are at
        # most 31, hence the row limit), and reuse avoids page faults on every resample.
        buffers = self._buffers
        if not hasattr(buffers, "below"):
            wide = len(self.neg_rows) + len(self.pos_rows) >= _INT32_ROWS
            dtype = np.int64 if wide else np.int32
            buffers.below = np.zeros(len(self.neg_rows) + 1, dtype=dtype)
            buffers.credit = np.empty(len(self.pos_rows), dtype=dtype)
            buffers.other = np.empty(len(self.pos_rows), dtype=dtype)
            buffers.w_neg = np.empty(len(self.neg_rows), dtype=np.uint8)
            buffers.w_pos = np.empty(len(self.pos_rows), dtype=np.uint8)
        below, credit = buffers.below, buffers.credit
        neg_sel, pos_sel = self.neg_sel, self.pos_sel
        if isinstance(neg_sel, slice) or isinstance(pos_sel, slice):  # contiguous: in place
            w_neg, w_pos = weights[neg_sel], weights[pos_sel]
        else:  # gathered once per resample into reused buffers
            w_neg, w_pos = buffers.w_neg, buffers.w_pos
            np.take(weights, neg_sel, out=w_neg)
            np.take(weights, pos_sel, out=w_pos)
        np.cumsum(w_neg, out=below[1:])
        np.take(below, self.lo, out=credit)
        if self.ties:  # a tie counts one half: (below + below-or-equal) / 2
            np.take(below, self.hi, out=buffers.other)
            credit += buffers.other
            scale = 2.0
        else:
            scale = 1.0
        pairs = scale * float(w_pos.sum(dtype=np.int64)) * float(below[-1])
        # einsum, not np.dot: no BLAS threads to start for each resample
        dot = np.einsum("i,i->", w_pos, credit, dtype=np.int64)
        return float(dot) / pairs if pairs else float("nan")


# From this many rows on, a binary AUC's bootstrap resamples DeLong's placement values
# (:class:`_AucPlacements`) instead of recomputing the AUC under every resample.
AUC_PLACEMENT_ROWS = 200_000


class _AucPlacements(PairedEvaluation):
    """A binary AUC over many rows, resampled through its placement values (DeLong).

    A positive's placement is the share of negatives scored below it (ties count one
    half), a negative's the share of positives scored above it; the AUC is the mean of
    either. Under weights, the AUC is a U-statistic, quadratic in the weights; its Hajek
    projection -- weighted mean placement of the positives, plus that of the negatives,
    minus the AUC -- is linear in them and differs from it by a term of order 1/n, while
    the bootstrap spread is of order 1/sqrt(n). From ``AUC_PLACEMENT_ROWS`` rows on that
    term is below 1 % of the spread (tests/test_gate.py checks the bounds against the
    exact path), and a resample costs a few dot products over the rows: no prefix sums
    and no gathers. Rows are held negatives first, each model's placements in that one
    order, so both models read the same contiguous weights.
    """

    weight_dtype = np.uint8
    note = "AUC resampled through its placement values (DeLong)"

    def __init__(self, positive: Array, scores_a: Array, scores_b: Array) -> None:
        # the champion's sorted order (as _AucPart holds it), so that the same seed gives
        # each row the same weight as on the exact path
        first = _AucPart(scores_a, positive)
        neg_rows, pos_rows = first.neg_rows, first.pos_rows
        self.units = len(positive)
        self.split = len(neg_rows)
        self.auc: list[float] = []
        # per model, twice the placements times the other class's count: whole numbers,
        # so the weighted sums are exact integers
        self.columns: list[tuple[Array, Array]] = []
        self.scale = (2.0 * len(pos_rows), 2.0 * len(neg_rows))
        for scores in (scores_a, scores_b):
            neg, pos = scores[neg_rows], scores[pos_rows]
            sorted_neg, sorted_pos = np.sort(neg), np.sort(pos)
            below = np.searchsorted(sorted_neg, pos, "left")
            below_eq = np.searchsorted(sorted_neg, pos, "right")
            above = len(pos) - np.searchsorted(sorted_pos, neg, "right")
            above_eq = len(pos) - np.searchsorted(sorted_pos, neg, "left")
            pos_twice = (below + below_eq).astype(np.int32)  # 2 x below + ties
            neg_twice = (above + above_eq).astype(np.int32)
            self.auc.append(float(pos_twice.sum(dtype=np.int64)) / (len(pos) * 2.0 * len(neg)))
            self.columns.append((neg_twice, pos_twice))

    def values(self, weights: Array) -> tuple[Array, Array]:
        k = self.split
        w_neg, w_pos = weights[:, :k], weights[:, k:]
        n_neg = w_neg.sum(axis=1, dtype=np.int64) * self.scale[0]
        n_pos = w_pos.sum(axis=1, dtype=np.int64) * self.scale[1]
        out = []
        for auc, (neg_twice, pos_twice) in zip(self.auc, self.columns, strict=True):
            neg = np.einsum("ij,j->i", w_neg, neg_twice, dtype=np.int64)
            pos = np.einsum("ij,j->i", w_pos, pos_twice, dtype=np.int64)
            with np.errstate(divide="ignore", invalid="ignore"):
                out.append(pos / n_pos + neg / n_neg - auc)
        return out[0], out[1]

    def observed(self) -> tuple[float, float]:
        return self.auc[0], self.auc[1]


# Rows up to which an AUC's prefix sums of weights fit in int32 (weights are at most 31).
_INT32_ROWS = (1 << 31) // 32


# ----------------------------------------------------------------------------- inputs
def _array(x: Any, what: str, metric: str) -> Array:
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise InvalidEvaluation(f"{what} is not an array: {exc}", op="gate", target=metric) from exc
    if arr.dtype == object:
        raise InvalidEvaluation(
            f"{what} holds mixed or ragged values",
            op="gate",
            target=metric,
            hint="pass numbers (or labels) of one type, one per example",
        )
    if arr.ndim == 0 or arr.ndim > 2:
        raise InvalidEvaluation(
            f"{what} has shape {arr.shape}; expected (n,) or (n, classes)", op="gate", target=metric
        )
    if arr.shape[0] == 0:
        raise InvalidEvaluation(f"{what} is empty", op="gate", target=metric)
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).reshape(arr.shape[0], -1).any(axis=1).argmax())
        raise InvalidEvaluation(
            f"{what} has NaN or infinite values (first at row {bad})",
            op="gate",
            target=metric,
            hint="drop or impute those rows in both models' predictions and the labels",
        )
    return arr


def _numeric(arr: Array, what: str, metric: str) -> Array:
    if arr.dtype.kind not in "biuf":
        raise InvalidEvaluation(f"{what} must be numeric for {metric}", op="gate", target=metric)
    return arr.astype(np.float64)


def _one_dim(arr: Array, what: str, metric: str) -> Array:
    if arr.ndim != 1:
        raise InvalidEvaluation(
            f"{what} has shape {arr.shape}; {metric} expects one value per example",
            op="gate",
            target=metric,
        )
    return arr


def _labels(pred: Array) -> Array:
    return pred.argmax(axis=1) if pred.ndim == 2 else pred


def _group_index(groups: Any, n: int, metric: str) -> tuple[Array, int]:
    g = _array(groups, "groups", metric)
    g = _one_dim(g, "groups", metric)
    if len(g) != n:
        raise InvalidEvaluation(
            f"groups has {len(g)} rows but y_true has {n}", op="gate", target=metric
        )
    _, index = np.unique(g, return_inverse=True)
    return index.astype(np.int64), int(index.max()) + 1


def _by_group(stats: Array, index: Array, count: int) -> Array:
    out = np.zeros((count, stats.shape[1]))
    np.add.at(out, index, stats)
    return out


def validate(metric: str, y_true: Any, champion: Any, candidate: Any) -> tuple[Array, Array, Array]:
    """The three inputs as arrays of one length and matching shapes, free of NaN."""
    y = _array(y_true, "y_true", metric)
    a = _array(champion, "champion's predictions", metric)
    b = _array(candidate, "candidate's predictions", metric)
    n = y.shape[0]
    for what, arr in (("champion's predictions", a), ("candidate's predictions", b)):
        if arr.shape[0] != n:
            raise InvalidEvaluation(
                f"{what} has {arr.shape[0]} rows but y_true has {n}",
                op="gate",
                target=metric,
                hint="both models must be scored on the same evaluation examples, in order",
            )
    if a.shape != b.shape:
        raise InvalidEvaluation(
            f"the models' predictions have different shapes {a.shape} and {b.shape}",
            op="gate",
            target=metric,
        )
    if a.ndim == 2 and a.shape[1] < 2:
        raise InvalidEvaluation(
            f"predictions of shape {a.shape}: class scores need at least 2 columns",
            op="gate",
            target=metric,
            hint="pass one value per example as shape (n,)",
        )
    return _one_dim(y, "y_true", metric), a, b


def prepare(
    metric: str, y_true: Any, champion: Any, candidate: Any, *, k: int | None, groups: Any
) -> PairedEvaluation:
    """Validate the inputs for ``metric`` and return the paired evaluation to resample."""
    spec = metric_spec(metric)
    y, a, b = validate(metric, y_true, champion, candidate)
    n = y.shape[0]
    if spec.ranking:
        if groups is None:
            raise InvalidEvaluation(
                f"{metric} needs groups (each row's query or user id)", op="gate", target=metric
            )
        if k is None:
            raise InvalidPolicy(
                f"{metric} needs k",
                op="gate",
                target=metric,
                hint="Policy(metric='ndcg@10') or Policy(metric=..., k=10)",
            )
        index, count = _group_index(groups, n, metric)
        return _ranking(metric, _numeric(y, "y_true", metric), a, b, k, index, count)
    index_count = None if groups is None else _group_index(groups, n, metric)
    if metric == "auc":
        return _auc(y, a, b, index_count)
    stats_a, stats_b, finish = _additive(metric, y, a, b)
    if index_count is not None:
        stats_a = _by_group(stats_a, *index_count)
        stats_b = _by_group(stats_b, *index_count)
    return _RatioOfSums(stats_a, stats_b, finish)


def metric_value(
    metric: str, y_true: Any, pred: Any, *, k: int | None = None, groups: Any = None
) -> float:
    """One model's value of a gate metric, computed exactly as the gate computes it.

    For a pipeline's ``evaluate`` (so that the trial picked as best is best by the
    gate's own definition) and for reports. ``metric`` is a name such as ``"auc"`` or
    ``"ndcg@10"``; ranking metrics need ``groups`` (each row's query or user id).

    >>> metric_value("ndcg@2", [1, 0, 0, 1], [0.9, 0.1, 0.2, 0.8], groups=[1, 1, 2, 2])
    1.0
    """
    from lakeloop.gate.policy import Policy

    policy = Policy(metric=metric, k=k)
    value, _ = prepare(policy.metric, y_true, pred, pred, k=policy.k, groups=groups).observed()
    return value


def _mean(sums: Array) -> Array:
    result: Array = sums[:, 1] / sums[:, 0]
    return result


def _additive(
    metric: str, y: Array, a: Array, b: Array
) -> tuple[Array, Array, Callable[[Array], Array]]:
    n = y.shape[0]
    ones = np.ones((n, 1))
    if metric == "accuracy":
        if a.ndim == 2 and a.shape[1] < 2:
            raise InvalidEvaluation(
                "class scores need at least 2 columns", op="gate", target=metric
            )
        return (
            np.column_stack([ones, _labels(a) == y]),
            np.column_stack([ones, _labels(b) == y]),
            _mean,
        )
    if metric == "f1":
        a, b = _one_dim(a, "predictions", metric), _one_dim(b, "predictions", metric)
        classes = np.unique(np.concatenate([y, a, b]))
        binary = set(classes.tolist()) <= {0, 1}
        chosen = np.array([1]) if binary else classes

        def counts(pred: Array) -> Array:
            cols = [ones]
            for c in chosen:
                t, p = y == c, pred == c
                cols += [(t & p)[:, None], (~t & p)[:, None], (t & ~p)[:, None]]
            return np.hstack(cols).astype(np.float64)

        def finish(sums: Array) -> Array:
            tp, fp, fn = sums[:, 1::3], sums[:, 2::3], sums[:, 3::3]
            denom = 2 * tp + fp + fn
            f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
            result: Array = f1.mean(axis=1)
            return result

        return counts(a), counts(b), finish
    if metric == "log_loss":
        labels = y
        if a.ndim == 1:
            yv = _numeric(y, "y_true", metric)
            if not np.isin(yv, (0, 1)).all():
                raise InvalidEvaluation(
                    "log_loss with one probability per example needs 0/1 labels",
                    op="gate",
                    target=metric,
                    hint="pass probabilities of shape (n, classes)",
                )

            def p_true(p: Array) -> Array:
                pr = _probabilities(p, metric)
                result: Array = np.where(yv == 1, pr, 1 - pr)
                return result
        else:
            yi = _class_index(labels, a.shape[1], metric)

            def p_true(p: Array) -> Array:
                pr = _probabilities(p, metric)
                result: Array = pr[np.arange(n), yi]
                return result

        eps = 1e-15

        def loss(p: Array) -> Array:
            return np.column_stack([ones, -np.log(np.clip(p_true(p), eps, 1.0))])

        return loss(a), loss(b), _mean
    # rmse, mae
    yv = _numeric(y, "y_true", metric)
    av = _numeric(_one_dim(a, "predictions", metric), "predictions", metric)
    bv = _numeric(_one_dim(b, "predictions", metric), "predictions", metric)
    if metric == "rmse":

        def root_mean(sums: Array) -> Array:
            result: Array = np.sqrt(sums[:, 1] / sums[:, 0])
            return result

        return (
            np.column_stack([ones, (av - yv) ** 2]),
            np.column_stack([ones, (bv - yv) ** 2]),
            root_mean,
        )
    return np.column_stack([ones, np.abs(av - yv)]), np.column_stack([ones, np.abs(bv - yv)]), _mean


def _probabilities(p: Array, metric: str) -> Array:
    pr = _numeric(p, "probabilities", metric)
    if (pr < 0).any() or (pr > 1).any():
        raise InvalidEvaluation(
            "probabilities must lie in [0, 1]",
            op="gate",
            target=metric,
            hint="apply a sigmoid or softmax to raw scores first",
        )
    return pr


def _class_index(y: Array, classes: int, metric: str) -> Array:
    yv = _numeric(y, "y_true", metric)
    if not (np.equal(np.mod(yv, 1), 0).all() and yv.min() >= 0 and yv.max() < classes):
        raise InvalidEvaluation(
            f"labels must be class indices 0..{classes - 1} to match {classes} columns",
            op="gate",
            target=metric,
        )
    return yv.astype(np.int64)


def _auc(y: Array, a: Array, b: Array, index_count: tuple[Array, int] | None) -> PairedEvaluation:
    metric = "auc"
    sa, sb = _numeric(a, "scores", metric), _numeric(b, "scores", metric)
    if sa.ndim == 2 and sa.shape[1] == 2:  # two columns: the positive class is column 1
        sa, sb = sa[:, 1], sb[:, 1]
    if sa.ndim == 1:
        yv = _numeric(y, "y_true", metric)
        if not np.isin(yv, (0, 1)).all():
            raise InvalidEvaluation(
                "auc with one score per example needs 0/1 labels", op="gate", target=metric
            )
        positives, cols_a, cols_b = [yv == 1], [sa], [sb]
    else:
        yi = _class_index(y, sa.shape[1], metric)
        positives = [yi == c for c in range(sa.shape[1])]
        cols_a = [sa[:, c] for c in range(sa.shape[1])]
        cols_b = [sb[:, c] for c in range(sb.shape[1])]
    for c, pos in enumerate(positives):
        if pos.all() or not pos.any():
            raise InvalidEvaluation(
                f"auc needs positive and negative examples (class {c} has only one kind)",
                op="gate",
                target=metric,
            )
    if index_count is None and len(positives) == 1 and y.shape[0] >= AUC_PLACEMENT_ROWS:
        return _AucPlacements(positives[0], cols_a[0], cols_b[0])
    if index_count is None:
        return _Auc(positives, cols_a, cols_b, None, y.shape[0])
    index, count = index_count
    return _Auc(positives, cols_a, cols_b, index, count)


def _ranking(
    metric: str, rel: Array, a: Array, b: Array, k: int, group: Array, count: int
) -> PairedEvaluation:
    sa = _numeric(_one_dim(a, "scores", metric), "scores", metric)
    sb = _numeric(_one_dim(b, "scores", metric), "scores", metric)
    if (rel < 0).any():
        raise InvalidEvaluation("relevance labels must be >= 0", op="gate", target=metric)
    relevant = (rel > 0).astype(np.float64)
    n_relevant = np.bincount(group, weights=relevant, minlength=count)
    ideal = None
    if metric == "ndcg_at_k":
        ideal = _top_k_sum(rel, rel, group, count, k, discount=True)
        keep = ideal > 0
    elif metric == "recall_at_k":
        keep = n_relevant > 0
    else:
        keep = np.ones(count, dtype=bool)
    if not keep.any():
        raise InvalidEvaluation(
            f"no group has a relevant item, so {metric} is undefined", op="gate", target=metric
        )

    def per_group(scores: Array) -> Array:
        if metric == "ndcg_at_k":
            assert ideal is not None
            v = _top_k_sum(scores, rel, group, count, k, discount=True) / np.where(keep, ideal, 1)
        else:
            hits = _top_k_sum(scores, relevant, group, count, k, discount=False)
            v = hits / k if metric == "precision_at_k" else hits / np.where(keep, n_relevant, 1)
        return np.column_stack([np.ones(int(keep.sum())), v[keep]])

    return _RatioOfSums(per_group(sa), per_group(sb), _mean)


def _top_k_sum(
    scores: Array, gains: Array, group: Array, count: int, k: int, *, discount: bool
) -> Array:
    """Per group: the sum of ``gains`` over the k rows with the highest scores (ties by row
    order), divided by log2(rank + 2) when ``discount``."""
    order = np.lexsort((-scores, group))  # by group, then by score descending, stable
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.append(starts, len(g)))
    rank = np.arange(len(g)) - np.repeat(starts, sizes)
    top = rank < k
    value = gains[order] * top
    if discount:
        value = value / np.log2(rank + 2)
    return np.bincount(g, weights=value, minlength=count)
