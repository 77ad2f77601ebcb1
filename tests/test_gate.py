"""The gate's decisions: semantics, reference values, determinism and every input error."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _gatedata import paired_labels, scores
from lakeloop.errors import InvalidEvaluation, InvalidInput, InvalidPolicy
from lakeloop.gate import (
    METRICS,
    Policy,
    acceptance,
    combine,
    compare,
    compare_all,
    ratchet,
)


# ------------------------------------------------------------------ semantics of the outcome
def test_issue_example_names() -> None:
    rng = np.random.default_rng(0)
    y, a, b = paired_labels(rng, 5000, 0.90, 0.91, 0.06)
    policy = Policy(metric="accuracy", margin=0.01, confidence=0.95, promote="non-inferior")
    d = compare(y, a, b, policy, groups=None)
    assert d.outcome == "promote" and d.passed
    assert d.n == 5000 and d.metric == "accuracy"
    assert d.candidate_value - d.champion_value == pytest.approx(d.delta)
    lower, upper = d.interval
    assert lower <= d.delta <= upper and lower > -0.01
    assert 0 <= d.p_value <= 1 and isinstance(d.reasons, list) and d.reasons
    assert "McNemar" in d.test


def test_block_hold_promote_and_superior() -> None:
    rng = np.random.default_rng(1)
    y, a, b = paired_labels(rng, 5000, 0.90, 0.87, 0.06)
    d = compare(y, a, b, Policy(margin=0.01))
    assert d.outcome == "block" and not d.passed and d.interval[1] < 0 and d.p_value < 0.05
    # tolerance: a drop of 3 points is not "worse by more than 5 points"
    between = compare(y, a, b, Policy(margin=0.01, tolerance=0.05))
    assert between.outcome == "hold" and between.n_required is None
    assert any("would not decide" in r for r in between.reasons)
    y, a, b = paired_labels(rng, 400, 0.90, 0.90, 0.06)
    d = compare(y, a, b, Policy(margin=0.002))
    assert d.outcome == "hold" and d.passed
    assert d.n_required is not None and d.n_required > 400
    assert any("would decide" in r for r in d.reasons)
    y, a, b = paired_labels(rng, 5000, 0.90, 0.93, 0.06)
    assert compare(y, a, b, Policy(promote="superior")).outcome == "promote"
    y, a, b = paired_labels(rng, 5000, 0.90, 0.90, 0.06)
    assert compare(y, a, b, Policy(promote="superior", margin=0.01)).outcome == "hold"


def test_orientation_lower_is_better_metrics() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0] * 50)
    worse = y + 1.0
    better = y + 0.1
    for metric in ("rmse", "mae"):
        d = compare(y, worse, better, Policy(metric=metric))
        assert d.delta == pytest.approx(0.9) and d.outcome == "promote"
        assert d.champion_value == pytest.approx(1.0) and d.candidate_value == pytest.approx(0.1)
        assert compare(y, better, worse, Policy(metric=metric)).outcome == "block"


def test_identical_predictions_never_block() -> None:
    rng = np.random.default_rng(2)
    y, a, _ = paired_labels(rng, 500, 0.9, 0.9, 0.06)
    d = compare(y, a, a, Policy(margin=0.01))
    assert d.delta == 0 and d.interval == (0.0, 0.0) and d.outcome == "promote"
    y2, p, _ = scores(rng, 300)
    d = compare(y2, p, p, Policy(metric="auc", margin=0.01))
    assert d.delta == 0 and d.outcome == "promote"


def test_power_check_warns_and_can_fail() -> None:
    rng = np.random.default_rng(3)
    y, a, b = paired_labels(rng, 300, 0.9, 0.9, 0.18)
    d = compare(y, a, b, Policy(margin=0.01))
    assert d.underpowered and any("too small to detect" in r for r in d.reasons)
    assert d.outcome != "block"
    strict = compare(y, a, b, Policy(margin=0.01, require_power=True))
    assert strict.outcome == "block" and "require_power" in strict.reasons[-1]
    y, a, b = paired_labels(rng, 50_000, 0.9, 0.9, 0.06)
    assert not compare(y, a, b, Policy(margin=0.01, require_power=True)).underpowered


# ------------------------------------------------------------------------ reference values
def test_mcnemar_matches_statsmodels() -> None:
    from statsmodels.stats.contingency_tables import mcnemar

    for b_only, c_only in ((40, 20), (30, 20), (60, 40), (5, 0), (7, 9)):
        n = 1000
        y = np.ones(n, dtype=int)
        a = np.ones(n, dtype=int)
        b = np.ones(n, dtype=int)
        b[:b_only] = 0  # candidate wrong where the champion is right
        a[b_only : b_only + c_only] = 0  # champion wrong where the candidate is right
        d = compare(y, a, b, Policy(margin=0.01))
        two_sided = mcnemar([[n - b_only - c_only, b_only], [c_only, 0]], exact=True).pvalue
        if c_only < b_only:
            assert d.p_value == pytest.approx(min(1.0, two_sided / 2), rel=1e-9)
        assert d.delta == pytest.approx((c_only - b_only) / n)
    # the research notes: -2 points with 40/20 discordant at n=1000 is p = 0.013 two-sided
    y = np.ones(1000, dtype=int)
    a, b = y.copy(), y.copy()
    b[:40] = 0
    a[40:60] = 0
    assert 2 * compare(y, a, b, Policy()).p_value == pytest.approx(0.013, abs=0.001)


def test_acceptance_matches_statsmodels_and_scipy() -> None:
    from scipy.stats import binomtest
    from statsmodels.stats.proportion import proportion_confint

    for n, k in ((300, 276), (1000, 920), (2000, 1860), (50, 50), (40, 0), (1000, 1)):
        y = np.ones(n, dtype=int)
        pred = np.r_[np.ones(k, dtype=int), np.zeros(n - k, dtype=int)]
        cp = acceptance(y, pred, threshold=0.5)
        ref = binomtest(k, n).proportion_ci(confidence_level=0.90, method="exact").low
        assert cp.lower_bound == pytest.approx(ref, abs=1e-9)
        sm = proportion_confint(k, n, alpha=0.10, method="beta")[0]
        assert cp.lower_bound == pytest.approx(sm, abs=1e-9)
        w = acceptance(y, pred, threshold=0.5, method="wilson")
        wilson = proportion_confint(k, n, alpha=0.10, method="wilson")[0]
        assert w.lower_bound == pytest.approx(max(0.0, wilson), abs=1e-9)
    # the research notes' table: 92 % observed on 1000 examples proves about 0.904
    y = np.ones(1000, dtype=int)
    pred = np.r_[np.ones(920, dtype=int), np.zeros(80, dtype=int)]
    a = acceptance(y, pred, threshold=0.90)
    assert a.passed and round(a.lower_bound, 3) == 0.904 and a.estimate == 0.92


def test_acceptance_n_required() -> None:
    y = np.ones(500, dtype=int)
    pred = np.r_[np.ones(460, dtype=int), np.zeros(40, dtype=int)]  # 92 %
    a = acceptance(y, pred, threshold=0.90)
    assert not a.passed and a.n_required is not None and 500 < a.n_required < 2000
    # at n_required examples with the same accuracy the bound reaches the threshold
    from lakeloop.gate.acceptance import lower_bound

    assert lower_bound(0.92 * a.n_required, a.n_required, 0.95, "clopper-pearson") >= 0.90
    assert lower_bound(0.92 * (a.n_required - 1), a.n_required - 1, 0.95, "clopper-pearson") < 0.9
    low = acceptance(y, pred, threshold=0.95)
    assert not low.passed and low.n_required is None
    perfect = acceptance(np.ones(10), np.ones(10), threshold=0.9)
    assert perfect.n_required == math.ceil(math.log(0.05) / math.log(0.9))


def test_metric_values_match_references() -> None:
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(4)
    y, pa, pb = scores(rng, 400)
    pa[:50] = np.round(pa[:50], 1)  # some ties
    d = compare(y, pa, pb, Policy(metric="auc"))
    u = mannwhitneyu(pa[y == 1], pa[y == 0]).statistic
    assert d.champion_value == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()))
    ll = -np.mean(np.where(y == 1, np.log(pb), np.log(1 - pb)))
    assert compare(y, pa, pb, Policy(metric="log_loss")).candidate_value == pytest.approx(ll)
    two_col = np.column_stack([1 - pa, pa])
    assert compare(y, two_col, two_col, Policy(metric="auc")).champion_value == pytest.approx(
        d.champion_value
    )
    # multi-class log loss picks each row's true-class probability
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]] * 10)
    labels = np.array([0, 1, 1] * 10)
    expected = -np.mean(np.log([0.7, 0.8, 0.2]))
    got = compare(labels, probs, probs, Policy(metric="log_loss")).champion_value
    assert got == pytest.approx(expected)
    # binary F1 and macro F1
    t = np.array([1, 1, 0, 0, 1] * 20)
    p = np.array([1, 0, 0, 1, 1] * 20)
    assert compare(t, p, p, Policy(metric="f1")).champion_value == pytest.approx(
        2 * 2 / (4 + 1 + 1)
    )
    t3 = np.array([0, 1, 2, 2] * 20)
    p3 = np.array([0, 2, 2, 1] * 20)
    f1s = [1.0, 0.0, 0.5]  # per class: class 0 exact; class 1 never right; class 2 tp=1 fp=1 fn=1
    assert compare(t3, p3, p3, Policy(metric="f1")).champion_value == pytest.approx(np.mean(f1s))


def test_ranking_metrics_by_hand() -> None:
    groups = np.array([0, 0, 0, 1, 1, 1] * 20) + np.repeat(np.arange(20) * 2, 6)
    rel = np.array([2, 0, 1, 0, 1, 0] * 20)
    good = np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.1] * 20)  # perfect order in both queries
    bad = np.array([0.1, 0.9, 0.5, 0.9, 0.1, 0.5] * 20)
    d = compare(rel, bad, good, Policy(metric="ndcg@2"), groups=groups)
    assert d.candidate_value == pytest.approx(1.0) and d.n == 40
    ideal0 = 2 + 1 / math.log2(3)
    bad0 = 0 + 1 / math.log2(3)  # items ranked 0.9 (rel 0), then 0.5 (rel 1)
    bad1 = 0.0  # 0.9 (rel 0), 0.5 (rel 0)
    assert d.champion_value == pytest.approx((bad0 / ideal0 + bad1) / 2)
    assert d.outcome == "promote"
    p = compare(rel, bad, good, Policy(metric="precision_at_k", k=1), groups=groups)
    assert p.candidate_value == 1.0 and p.champion_value == 0.0
    r = compare(rel, bad, good, Policy(metric="recall@1"), groups=groups)
    assert r.candidate_value == pytest.approx((0.5 + 1.0) / 2)


def test_groups_resample_whole_groups_for_accuracy() -> None:
    rng = np.random.default_rng(5)
    y, a, b = paired_labels(rng, 2000, 0.9, 0.9, 0.06)
    d = compare(y, a, b, Policy(margin=0.01), groups=np.arange(2000) // 10)
    assert d.n == 200 and "bootstrap" in d.test and "n=200 groups" in d.reasons[0]
    assert d.champion_value == pytest.approx(np.mean(a == y))


# ------------------------------------------------------------------------------ determinism
def test_decisions_are_deterministic() -> None:
    rng = np.random.default_rng(6)
    y, pa, pb = scores(rng, 2000)
    for metric in ("auc", "log_loss"):
        first = compare(y, pa, pb, Policy(metric=metric, margin=0.005))
        again = compare(list(y), list(pa), list(pb), Policy(metric=metric, margin=0.005))
        assert first == again
        other_seed = compare(y, pa, pb, Policy(metric=metric, margin=0.005, seed=7))
        assert other_seed.delta == first.delta and other_seed.interval != first.interval


# ---------------------------------------------------------------------- several comparisons
def test_compare_all_with_slices_and_holm() -> None:
    rng = np.random.default_rng(8)
    y, a, b = paired_labels(rng, 4000, 0.90, 0.905, 0.06)
    ys, pa, pb = scores(rng, 4000)
    mobile = rng.random(4000) < 0.5
    c = compare_all(
        {"accuracy": y, "auc": ys}["accuracy"],
        {"accuracy": a, "auc": pa},
        {"accuracy": b, "auc": pb},
        [Policy(metric="accuracy", margin=0.02)],
        slices={"mobile": mobile},
    )
    assert [d.label for d in c.decisions] == ["accuracy", "accuracy [mobile]"]
    assert c.decisions[1].n == int(mobile.sum())
    assert all(d.p_value_adjusted is not None for d in c.decisions)
    assert c.outcome == "promote" and c.passed
    assert json.loads(json.dumps(c.to_dict()))["outcome"] == "promote"


def test_holm_turns_a_marginal_block_into_hold() -> None:
    y = np.ones(1000, dtype=int)
    a, b = y.copy(), y.copy()
    b[:40] = 0
    a[40:60] = 0  # one-sided p about 0.0067
    marginal = compare(y, a, b, Policy())
    assert marginal.outcome == "block"
    equal = compare(y, a, a, Policy())
    many = combine([marginal] + [equal] * 9)
    assert many.decisions[0].outcome == "hold" and many.outcome != "block"
    assert many.decisions[0].p_value_adjusted == pytest.approx(10 * marginal.p_value)
    assert combine([marginal, equal]).outcome == "block"
    assert combine([marginal] + [equal] * 9, correction="none").outcome == "block"
    assert combine([equal, equal]).outcome == "hold"  # margin 0: non-inferiority not shown
    lenient = compare(y, a, a, Policy(margin=0.01))
    assert combine([lenient, lenient]).outcome == "promote"


def test_ratchet_compares_with_the_best_of_the_last_champions() -> None:
    rng = np.random.default_rng(9)
    n = 3000
    y = rng.integers(0, 10, n)
    wrong = (y + 1) % 10

    def step(right: np.ndarray) -> np.ndarray:
        """A retrained model: loses 75 right examples, gains 60 (half a point worse)."""
        out = right.copy()
        out[rng.choice(np.flatnonzero(right), 75, replace=False)] = False
        out[rng.choice(np.flatnonzero(~right), 60, replace=False)] = True
        return out

    rights = [rng.random(n) < 0.92]
    for _ in range(3):
        rights.append(step(rights[-1]))
    v1, v2, v3, cand = (np.where(r, y, wrong) for r in rights)
    policy = Policy(margin=0.02)
    # each step lost half a point: against the current champion it is non-inferior
    assert compare(y, v3, cand, policy).outcome == "promote"
    d = ratchet(y, cand, {"v1": v1, "v2": v2, "v3": v3}, policy)
    assert "v1" in d.baseline and d.champion_value == pytest.approx(np.mean(v1 == y))
    assert d.outcome != "promote"
    listed = ratchet(y, cand, [v3, v1], policy)
    assert "#2" in listed.baseline
    family = compare_all(y, v3, cand, [policy], previous={"v1": v1, "v2": v2})
    assert family.decisions[0].baseline == "champion" and len(family.decisions) == 2
    assert "v1" in family.decisions[1].baseline and family.outcome != "promote"


# --------------------------------------------------------------------------- input errors
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metric": "accurcy"}, "unknown metric"),
        ({"margin": -0.1}, "margin"),
        ({"margin": float("nan")}, "finite"),
        ({"margin": "0.1"}, "number"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.4}, "confidence"),
        ({"promote": "better"}, "promote"),
        ({"tolerance": -1}, "tolerance"),
        ({"metric": "ndcg_at_k"}, "needs an integer k"),
        ({"metric": "ndcg@5", "k": 3}, "contradicts"),
        ({"metric": "accuracy", "k": 5}, "ranking metrics only"),
        ({"resamples": 100}, "at least 1000"),
        ({"seed": -1}, "seed"),
        ({"power": 1.5}, "power"),
        ({"require_power": "yes"}, "require_power"),
    ],
)
def test_policy_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidPolicy, match=match):
        Policy(**kwargs)


def test_policy_from_dict_refuses_unknown_keys() -> None:
    assert Policy.from_dict({"metric": "auc", "margin": 0.01}).metric == "auc"
    with pytest.raises(InvalidPolicy, match="unknown key 'marign'"):
        Policy.from_dict({"metric": "auc", "marign": 0.01})
    assert set(METRICS) >= {"accuracy", "auc", "f1", "log_loss", "rmse", "mae"}


@pytest.mark.parametrize(
    ("y", "a", "b", "policy", "groups", "match"),
    [
        ([1, 0, 1], [1, 0], [1, 0, 1], Policy(), None, "has 2 rows"),
        ([1, 0, 1], [1, 0, 1], [1, 0], Policy(), None, "has 2 rows"),
        ([1.0, float("nan")], [1.0, 1.0], [1.0, 1.0], Policy(metric="rmse"), None, "NaN"),
        ([1.0, 2.0], [1.0, np.inf], [1.0, 1.0], Policy(metric="rmse"), None, "NaN or infinite"),
        ([], [], [], Policy(), None, "empty"),
        (5, 5, 5, Policy(), None, "shape"),
        ([[1, 0]], [[1, 0]], [[1, 0]], Policy(), None, "y_true has shape"),
        ([1, 0], [[0.2, 0.8], [0.6, 0.4]], [1, 0], Policy(), None, "different shapes"),
        ([1, 0], [1.5, 0.2], [0.5, 0.2], Policy(metric="log_loss"), None, r"\[0, 1\]"),
        ([2, 0], [0.5, 0.2], [0.5, 0.2], Policy(metric="log_loss"), None, "0/1 labels"),
        ([1, 1], [0.5, 0.2], [0.5, 0.2], Policy(metric="auc"), None, "positive and negative"),
        (
            [0, 3],
            [[0.2, 0.3, 0.5]] * 2,
            [[0.2, 0.3, 0.5]] * 2,
            Policy(metric="auc"),
            None,
            "indices",
        ),
        ([1, 0], [1, 0], [1, 0], Policy(metric="ndcg@3"), None, "needs groups"),
        ([1, 0], [1, 0], [1, 0], Policy(metric="ndcg@3"), [1], "groups has 1 rows"),
        ([0, 0], [1, 0], [1, 0], Policy(metric="recall@3"), [1, 1], "no group"),
        ([1, 0], ["a", "b"], ["a", "b"], Policy(metric="rmse"), None, "numeric"),
        ([1, 0], [[1], [0, 1]], [1, 0], Policy(), None, "array|ragged|mixed"),
        ([1, 0], [[1], [0]], [[1], [0]], Policy(), None, "at least 2 columns"),
    ],
)
def test_input_errors(y, a, b, policy, groups, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidEvaluation, match=match) as info:
        compare(y, a, b, policy, groups)
    assert isinstance(info.value, InvalidInput) and isinstance(info.value, ValueError)
    assert info.value.op


def test_other_api_errors() -> None:
    with pytest.raises(InvalidPolicy):
        compare([1], [1], [1], {"metric": "accuracy"})  # type: ignore[arg-type]
    with pytest.raises(InvalidPolicy, match="no decisions"):
        combine([])
    d1 = compare([1, 0], [1, 0], [1, 0], Policy())
    d2 = compare([1, 0], [1, 0], [1, 0], Policy(confidence=0.99))
    with pytest.raises(InvalidPolicy, match="share one confidence"):
        combine([d1, d2])
    with pytest.raises(InvalidPolicy, match="correction"):
        combine([d1], correction="bonferroni")
    with pytest.raises(InvalidEvaluation, match="no entry"):
        compare_all([1, 0], {"auc": [1, 0]}, {"auc": [1, 0]}, [Policy()])
    with pytest.raises(InvalidEvaluation, match="selects no rows"):
        compare_all([1, 0], [1, 0], [1, 0], [Policy()], slices={"none": [False, False]})
    with pytest.raises(InvalidEvaluation, match="shape"):
        compare_all([1, 0], [1, 0], [1, 0], [Policy()], slices={"bad": [True]})
    with pytest.raises(InvalidPolicy):
        compare_all([1, 0], [1, 0], [1, 0], [])
    with pytest.raises(InvalidEvaluation, match="at least one"):
        ratchet([1, 0], [1, 0], {}, Policy())
    with pytest.raises(InvalidPolicy, match="accuracy"):
        acceptance([1], [1], metric="auc", method="wilson")
    with pytest.raises(InvalidPolicy, match="method"):
        acceptance([1], [1], method="jeffreys")
    with pytest.raises(InvalidPolicy, match="threshold"):
        acceptance([1], [1], threshold=1.5)
    with pytest.raises(InvalidEvaluation, match="rows"):
        acceptance([1, 0], [1])


# ------------------------------------------------------------------------------- properties
@st.composite
def paired_case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(2, 60))
    y = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    a = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    b = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    return y, a, b


@settings(max_examples=60, deadline=None)
@given(paired_case(), st.sampled_from(["accuracy", "f1"]))
def test_swapping_models_flips_the_difference(case, metric: str) -> None:  # type: ignore[no-untyped-def]
    y, a, b = case
    policy = Policy(metric=metric, margin=0.05)
    d = compare(y, a, b, policy)
    r = compare(y, b, a, policy)
    assert r.delta == pytest.approx(-d.delta, abs=1e-12)
    assert r.interval[0] == pytest.approx(-d.interval[1], abs=1e-9)
    assert r.interval[1] == pytest.approx(-d.interval[0], abs=1e-9)
    for x in (d, r):
        assert x.interval[0] <= x.delta + 1e-12 and x.delta <= x.interval[1] + 1e-12
        assert x.outcome in ("promote", "hold", "block")
        assert x.passed == (x.outcome != "block")
        assert 0 <= x.p_value <= 1


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-5, 5), min_size=3, max_size=40),
    st.lists(st.floats(-5, 5), min_size=3, max_size=40),
)
def test_regression_interval_contains_delta(errs_a: list[float], errs_b: list[float]) -> None:
    n = min(len(errs_a), len(errs_b))
    y = np.zeros(n)
    d = compare(y, np.array(errs_a[:n]), np.array(errs_b[:n]), Policy(metric="mae"))
    assert d.interval[0] <= d.delta <= d.interval[1]
    flipped = compare(y, np.array(errs_b[:n]), np.array(errs_a[:n]), Policy(metric="mae"))
    assert flipped.delta == pytest.approx(-d.delta, abs=1e-12)


# ------------------------------------------------------------------------ bootstrap speed
def _scored(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    logit = 1.5 * (2 * y - 1) + rng.normal(size=rows)
    a = 1 / (1 + np.exp(-(logit + 0.5 * rng.normal(size=rows))))
    b = 1 / (1 + np.exp(-(logit + 0.5 * rng.normal(size=rows))))
    return y, np.round(a, 3), np.round(b, 3)  # rounded: ties too


def test_auc_placements_agree_with_the_exact_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    """From AUC_PLACEMENT_ROWS rows on, AUC resamples its placements (linear in the
    weights); its bounds match the exact reweighted AUC's to a small share of the width."""
    import lakeloop.gate.metrics as metrics

    y, a, b = _scored(metrics.AUC_PLACEMENT_ROWS)
    policy = Policy(metric="auc")
    fast = compare(y, a, b, policy)
    assert "placement values" in fast.test  # same seed, same weights per row
    monkeypatch.setattr(metrics, "AUC_PLACEMENT_ROWS", 10**12)
    exact = compare(y, a, b, policy)
    assert fast.delta == pytest.approx(exact.delta, abs=1e-12)
    assert fast.champion_value == pytest.approx(exact.champion_value, abs=1e-12)
    width = exact.interval[1] - exact.interval[0]
    assert width > 0
    for got, want in zip(fast.interval, exact.interval, strict=True):
        assert abs(got - want) < 0.01 * width


def test_the_bootstrap_is_the_same_on_threads_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    import lakeloop.gate.stats as stats

    y, a, b = _scored(20_000, seed=3)
    monkeypatch.setattr(stats, "PARALLEL_MIN_WEIGHTS", 1)
    monkeypatch.setattr(stats, "MAX_THREADS", 4)
    threaded = [compare(y, a, b, Policy(metric=m)) for m in ("auc", "log_loss", "rmse")]
    monkeypatch.setattr(stats, "MAX_THREADS", 1)
    serial = [compare(y, a, b, Policy(metric=m)) for m in ("auc", "log_loss", "rmse")]
    for t, s in zip(threaded, serial, strict=True):
        assert t.interval == s.interval and t.p_value == s.p_value and t.outcome == s.outcome
